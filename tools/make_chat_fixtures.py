#!/usr/bin/env python3
"""Chat-template fixtures for src/select/chat.rs: what transformers' apply_chat_template renders
for SmolLM2-135M-Instruct's template (read from its GGUF, `tools/fetch-models.sh`) and a
Llama-3-style one, over a few conversations, with and without the generation prompt.

    python3 -m venv ~/venv-chat && ~/venv-chat/bin/pip install transformers==5.25.0 gguf==0.19.0 tokenizers
    ~/venv-chat/bin/python tools/make_chat_fixtures.py > tests/fixtures/chat/templates.json
"""
import json
import sys

from gguf import GGUFReader
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

reader = GGUFReader("models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
field = reader.fields["tokenizer.chat_template"]
smollm2 = bytes(field.parts[field.data[0]]).decode()

llama3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

TEMPLATES = [
    {"name": "smollm2", "template": smollm2, "bos": "<|im_start|>", "eos": "<|im_end|>"},
    {"name": "llama3", "template": llama3, "bos": "<|begin_of_text|>", "eos": "<|eot_id|>"},
]
CONVERSATIONS = [
    [{"role": "user", "content": "Which keyphrases fit?\nTitle: Sets\n"}],
    [{"role": "system", "content": "You label keyphrases."},
     {"role": "user", "content": "  Title: x  "}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "T F"},
     {"role": "user", "content": "again: ünïcödé \"quotes\" {{ braces }}"}],
]

cases = []
for t in TEMPLATES:
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()),
                                  bos_token=t["bos"], eos_token=t["eos"])
    tok.chat_template = t["template"]
    for messages in CONVERSATIONS:
        for gen in (True, False):
            cases.append({
                "template": t["name"], "messages": messages, "add_generation_prompt": gen,
                "rendered": tok.apply_chat_template(messages, tokenize=False,
                                                    add_generation_prompt=gen),
            })
json.dump({"made_by": "tools/make_chat_fixtures.py",
           "transformers": __import__("transformers").__version__,
           "templates": TEMPLATES, "cases": cases}, sys.stdout, indent=1, ensure_ascii=False)
sys.stdout.write("\n")
