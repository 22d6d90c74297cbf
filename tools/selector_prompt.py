"""The selector's prompt rendered in Python, independently of kpg's code, for the scripts that hold
kpg's selector to transformers (tools/make_selector_fixture.py, tools/check_selector_in_peft.py):
a kpg_selector.json template filled as its README section says, wrapped in the tokenizer's own chat
template when there is one, and the label positions found through the tokenizer's offsets.
"""


def fill(template, **values):
    # kpg inserts values verbatim and never re-expands them: one pass over the template.
    out, i = [], 0
    while i < len(template):
        if template[i] == "{":
            j = template.find("}", i)
            key = template[i + 1:j] if j > 0 else None
            if key in values:
                out.append(values[key])
                i = j + 1
                continue
        out.append(template[i])
        i += 1
    return "".join(out)


def render(cfg, tok, doc, phrases, label):
    user = cfg["instruction"] + fill(cfg["document"], title=doc["title"], abstract=doc["abstract"])
    user += cfg["candidates_header"]
    for n, p in enumerate(phrases, 1):
        user += fill(cfg["candidate"], n=str(n), phrase=p)
    if cfg.get("chat_template", "auto") != "off" and tok.chat_template:
        text = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                       add_generation_prompt=True)
    else:
        text = user
    text += cfg["answer_prefix"]
    spans = []
    for n, p in enumerate(phrases, 1):
        before, after = cfg["answer_item"].split("{label}")
        text += fill(before, n=str(n), phrase=p)
        spans.append((len(text), len(text) + len(label)))
        text += label
        text += fill(after, n=str(n), phrase=p)
    return text, spans


def label_positions(tok, text, spans):
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    pos = []
    for start, end in spans:
        hits = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        assert len(hits) == 1, f"label at {start} spans {len(hits)} tokens"
        pos.append(hits[0])
    return ids, pos
