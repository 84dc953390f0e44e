"""The demo model's words: every answer it gives is stitched from these sentences and lists.

Openers start an answer; body sentences follow in any order (a paragraph break or a list
now and then). ``demo_model`` turns them into a chain of multi-word tokens baked into the
model's weights, so what it writes is always whole sentences from here.
"""

OPENERS = [
    "Good question, and a short answer first.",
    "Here is how the demo sees it.",
    "Let me answer with what a small adapter can do.",
    "In short, it depends on the adapter you trained.",
    "This is the demo model speaking, so take it lightly.",
    "That is a common question when serving a fine-tuned model.",
    "There are a few parts to this.",
    "Happy to help with that.",
]

SENTENCES = [
    "A LoRA adapter adds small **low-rank** matrices to a frozen base model.",
    "Only the adapter weights change during fine-tuning, so the file stays small.",
    "The base model is loaded once and the adapter is applied on top of it.",
    "Merging the adapter into the weights makes every token a little faster.",
    "An unmerged adapter lets the server answer for the base model too.",
    "The server streams each token as soon as it is generated.",
    "Streaming makes a long answer feel quick, because the first words arrive early.",
    "Requests that arrive together are decoded in one batch.",
    "A batch keeps the GPU busy while each user still gets their own answer.",
    "The context window limits how much of the conversation the model can see.",
    "When the conversation grows too long, the earliest turns are left out.",
    "Every request needs the API key, which lives in a container app secret.",
    "Azure Container Apps can scale the endpoint to zero when nobody is chatting.",
    "Waking from zero takes a few minutes, since the model must load again.",
    "A serverless GPU such as an **A100** or a **T4** runs the real model.",
    "The file share holds the base model, the adapter and the server code.",
    "Deploying uploads only the files that changed, then restarts the replica.",
    "The health probe tells the platform when the model is ready to answer.",
    "Use `aitk logs` to watch the replica while it starts.",
    "The `max_tokens` setting caps how long an answer can grow.",
    "A lower temperature makes the answers steadier and less surprising.",
    "A higher temperature makes the model wander into new phrasing.",
    "The demo model was built on this machine in a few seconds, with no download.",
    "Its sentences come from a small list, so the ideas repeat now and then.",
    "A real fine-tuned model would answer your question properly.",
    "Try the same prompt against your own adapter to see the difference.",
    "Evaluation on a held-out set tells you whether the adapter really helped.",
    "Quantized weights save memory at a small cost in quality.",
    "The tokenizer turns text into tokens before the model sees it.",
    "Each token is a small piece of text, and the model predicts the next one.",
    "Press **Esc** to stop an answer that is going nowhere.",
    "You can save the conversation as Markdown with `ctrl+s`.",
]

LISTS = [
    ("Here is the short version:",
     ["Load the base model once.", "Apply the LoRA adapter.", "Stream the tokens to the chat."]),
    ("To deploy your own adapter:",
     ["Put the model on the file share.", "Run `aitk deploy` to upload the server.",
      "Wait for the endpoint to report healthy."]),
    ("A few things to check first:",
     ["The region offers serverless GPUs.", "Your subscription has GPU quota.",
      "The adapter matches its base model."]),
    ("What the server gives you:",
     ["An OpenAI-compatible chat API.", "Batching of concurrent requests.", "Usage counts with every answer."]),
    ("Ways to make answers faster:",
     ["Merge the adapter into the weights.", "Keep one replica warm.", "Ask for fewer tokens."]),
]

#: Words too common to say what a question is about (they carry no topic).
STOP_WORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it its me my of on or so that the then "
    "this to was what when where which who why will with you your".split()
)


def corpus_units() -> tuple[list[str], list[str], list[str]]:
    """The answer grammar's units: openers, sentences, and lists (an intro and its items)."""
    lists = [intro + "".join(("\n\n- " if i == 0 else "\n- ") + item for i, item in enumerate(items))
             for intro, items in LISTS]
    return OPENERS, SENTENCES, lists


def training_text(replies: dict[str, tuple[str, str]]) -> list[str]:
    """What the demo tokenizer is trained on: every unit, and each memorised prompt and reply."""
    openers, sentences, lists = corpus_units()
    texts = openers + sentences + lists
    for prompt, pair in replies.items():
        texts += [prompt, *pair]
    return texts
