"""Ready-to-paste calls of the endpoint: curl, and the OpenAI client for Python and JavaScript.

Pure text (no I/O), shared by ``aitk snippet`` and the TUI's "Copy snippet" commands. The
key is never in a snippet: each reads it from ``$AITK_API_KEY`` and says how to set it.
Every value put into code is quoted for the language it lands in (a model or URL with a
quote, a ``$`` or a newline in it stays data), so a snippet is safe to paste as it is.
"""

from __future__ import annotations

import json
import shlex

from .chat.client import normalize_base_url

LANGUAGES = ("curl", "python", "js")
KEY_ENV = "AITK_API_KEY"
PROMPT = "Hello! What can you do?"


def key_command(*, local: bool = False, project: str | None = None) -> str:
    """The shell line that puts the app's key into the environment."""
    flags = (" --local" if local else "") + (f" --project {shlex.quote(project)}" if project else "")
    return f'export {KEY_ENV}="$(aitk{flags} key)"'


def snippet(language: str, endpoint: str, model: str, *, set_key: str, ca_bundle: str | None = None) -> str:
    """A complete program calling ``endpoint`` (a host or URL) with ``model``. ``set_key``:
    the shell line that sets $AITK_API_KEY (:func:`key_command`). ``ca_bundle``: a CA file
    the endpoint's certificate needs (the local cloud's), or None for the public roots."""
    if language not in LANGUAGES:
        raise ValueError(f"no snippet for {language!r}: choose one of {', '.join(LANGUAGES)}")
    base = normalize_base_url(endpoint)
    return {"curl": _curl, "python": _python, "js": _js}[language](base, model, set_key, ca_bundle)


def _curl(base: str, model: str, set_key: str, ca_bundle: str | None) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": PROMPT}]})
    cacert = f" --cacert {shlex.quote(ca_bundle)}" if ca_bundle else ""
    return (f"# {set_key}\n"
            f"curl -sS --fail-with-body{cacert} {shlex.quote(base + '/chat/completions')} \\\n"
            f'  -H "Authorization: Bearer ${KEY_ENV}" \\\n'
            f'  -H "Content-Type: application/json" \\\n'
            f"  -d {shlex.quote(body)}\n")


def _python(base: str, model: str, set_key: str, ca_bundle: str | None) -> str:
    q = json.dumps  # a JSON string is a valid Python string literal
    client_args = f"base_url={q(base)}, api_key=os.environ[{q(KEY_ENV)}]"
    imports = "import os\n\n"
    if ca_bundle:
        imports = "import os\n\nimport httpx\n"
        client_args += f", http_client=httpx.Client(verify={q(ca_bundle)})"
    return (f"# pip install openai\n# {set_key}\n{imports}from openai import OpenAI\n\n"
            f"client = OpenAI({client_args})\n"
            f"stream = client.chat.completions.create(\n"
            f"    model={q(model)},\n"
            f"    messages=[{{\"role\": \"user\", \"content\": {q(PROMPT)}}}],\n"
            f"    stream=True,\n"
            f")\n"
            f"for chunk in stream:\n"
            f"    if chunk.choices and chunk.choices[0].delta.content:\n"
            f"        print(chunk.choices[0].delta.content, end=\"\", flush=True)\n"
            f"print()\n")


def _js(base: str, model: str, set_key: str, ca_bundle: str | None) -> str:
    q = json.dumps
    ca = f"# export NODE_EXTRA_CA_CERTS={shlex.quote(ca_bundle)}\n" if ca_bundle else ""
    ca = ca.replace("# ", "// ", 1)
    return (f"// npm install openai   (then run this file as an ES module: node chat.mjs)\n// {set_key}\n{ca}"
            f"import OpenAI from \"openai\";\n\n"
            f"const client = new OpenAI({{ baseURL: {q(base)}, apiKey: process.env.{KEY_ENV} }});\n"
            f"const stream = await client.chat.completions.create({{\n"
            f"  model: {q(model)},\n"
            f"  messages: [{{ role: \"user\", content: {q(PROMPT)} }}],\n"
            f"  stream: true,\n"
            f"}});\n"
            f"for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? \"\");\n"
            f"process.stdout.write(\"\\n\");\n")
