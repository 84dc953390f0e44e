"""aitk's bundled inference server: a base causal LM plus a LoRA adapter behind the OpenAI
chat-completions protocol. Run ``python -m inference_server --help``.

Modules: ``adapter_spec`` (the NAME=PATH,... list; standard library only, the one module
aitk imports), ``settings`` (config), ``loading`` (model + adapter), ``engine`` (batched
generation, no HTTP), ``handles`` (a request's asyncio side), ``textstream`` (incremental
text, stop strings), ``app`` (the FastAPI factory, which only wires ``gate``, ``errors``,
``serving`` and ``state``), ``schemas`` (wire format), ``metrics``, ``demo_model`` (offline
tiny model for tests and aitk's local cloud).
Importing this package does not import torch.
"""
