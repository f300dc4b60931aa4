"""Hugging Face `tokenizers` rebuilt from a GGUF's own vocabulary: the independent reference
for Scroll's tokenizer.

SmolLM2's tokenizer.json is byte-level BPE with pre_tokenizer
Sequence([Digits(individual_digits=True), ByteLevel(add_prefix_space=False, use_regex=True)]);
the GGUF (tokenizer.ggml.pre = "smollm") stores the same vocabulary and merges.

load_hf_tokenizer(path)                 plain text: "<|im_start|>" typed by a user stays text
load_hf_tokenizer(path, specials=True)  control tokens (token_type 3) are matched in text,
                                        as when HF encodes a rendered chat template
load_hf_tokenizer(path, pre="qwen2")    the same vocabulary with Qwen2's split pattern, to
                                        check the qwen2 pre-tokenizer on real merges
"""
import sys

from gguf import GGUFReader
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers


def _strings(field):
    return [bytes(field.parts[i]).decode("utf-8") for i in field.data]


# Qwen2's split pattern (its tokenizer.json), for the qwen2 pre-tokenizer vectors.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


# Llama 3's (its tokenizer.json): the same, with numbers in pieces of up to three digits.
LLAMA3_PATTERN = QWEN2_PATTERN.replace(r"|\p{N}", r"|\p{N}{1,3}", 1)


def load_hf_tokenizer(gguf_path, specials=False, pre="smollm"):
    r = GGUFReader(gguf_path)
    tokens = _strings(r.fields["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in _strings(r.fields["tokenizer.ggml.merges"])]
    types = [int(r.fields["tokenizer.ggml.token_type"].parts[i][0]) for i in r.fields["tokenizer.ggml.token_type"].data]
    vocab = {t: i for i, t in reversed(list(enumerate(tokens)))}
    tok = Tokenizer(models.BPE(vocab, merges))
    if pre in ("qwen2", "llama3"):  # the same vocabulary split the way Qwen2 or Llama 3 split text
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN if pre == "qwen2" else LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ])
    tok.decoder = decoders.ByteLevel()
    if specials:
        tok.add_special_tokens([AddedToken(t, special=True) for t, ty in zip(tokens, types) if ty == 3])
    return tok


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    chat = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    golden = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407,
              19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
    ids = load_hf_tokenizer(path, specials=True).encode(chat).ids
    assert ids == golden, ids
    print("golden ChatML prompt ids: OK")
