"""Tokenizer test vectors: ids from Hugging Face `tokenizers` (rebuilt from the GGUF by
hf_tokenizer.py) on a varied corpus, for Tests/EngineTests/TokenizerTests.swift.

Run from the repo root:  python3 Tests/EngineTests/Reference/make_tokenizer_vectors.py
Writes Tests/EngineTests/Reference/tokenizer_vectors.json (the model's own smollm
pre-tokenizer), tokenizer_vectors_qwen2.json and tokenizer_vectors_llama3.json (the same
vocabulary split with Qwen2's and Llama 3's patterns), each a list of
{"name", "text_b64": the exact input bytes, "ids", "decoded_b64": UTF-8 of decode(ids)}; the
llama3 file also has "pieces_b64", the pre-tokenizer's pieces (this vocabulary splits
digits one by one, so only the pieces show Llama 3's groups of three).
Invalid UTF-8 inputs are encoded as bytes.decode("utf-8", errors="replace"), which is what
Swift's String(decoding:as:) makes of them.
"""
import base64
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from hf_tokenizer import load_hf_tokenizer  # noqa: E402

OUT = pathlib.Path(__file__).with_name("tokenizer_vectors.json")
MODEL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

LONG = (
    "The lighthouse keeper had kept a log for thirty-one years, and in all that time he had "
    "never missed an entry. Some days the entries were short: 'Fog. No ships.' Other days "
    "they ran for pages, describing the colour of the water at dawn, the migration of the "
    "terns, the slow erosion of the northern cliff. When the inspector arrived in 1987 to "
    "announce that the light would be automated, the keeper showed him the logs, all 412 "
    "volumes, stacked floor to ceiling in the storeroom. The inspector, a young man from the "
    "capital who had never seen the sea in winter, spent three days reading them. He didn't "
    "sleep much. On the fourth morning he wrote his report: the light would be automated, "
    "as planned, but the keeper would stay. \"Someone,\" he wrote, \"has to keep writing it "
    "down.\" Years later, historians would use those logs to reconstruct the weather of the "
    "whole coast — temperature, wind speed (in knots), visibility — with an accuracy no "
    "instrument of the time could match. The keeper never learned of this. He died in 2003, "
    "at 86, in the cottage beside the tower; his last entry reads: 'Clear. Calm. 3 ships.'\n\n"
    "His daughter, who had moved inland to teach mathematics, came back only once after the "
    "funeral. She found the last volume open on the desk, its ribbon marking a page dated "
    "14 March, and beneath the weather notes a short list in pencil: \"Paint the rail. Fix the "
    "gate. Call Maria about the boat.\" She sat with it for a long while. Then she took a fresh "
    "notebook from the shelf, wrote the date at the top of the first page, and went outside "
    "to look at the sky. The wind was from the south-west, perhaps fifteen knots, and the "
    "clouds were the high, thin kind her father had called 'mare's tails'. She wrote that "
    "down too. In the years that followed she came every summer, and then, when she retired, "
    "she stayed. The keepers' cottage got a new roof; the storeroom got shelves that reached "
    "the ceiling; the automated lamp turned above them both, indifferent and reliable. "
    "Visitors sometimes asked her why she bothered, since satellites now measured everything "
    "to the second decimal place. She would shrug and say it wasn't about the numbers. "
    "\"A satellite can tell you the wind,\" she'd say, \"but it can't tell you that the terns "
    "came back three days late, or that the fishing boats stayed in because old Tomas had a "
    "feeling.\" Most visitors smiled politely. A few, usually the children, asked if they "
    "could write something in the book. She always let them.\n\n"
    "By now there are 57 volumes in her hand, and a shelf of smaller ones in other hands: "
    "a boy's careful drawing of a gannet, a note that reads \"saw a seal!!\" with the date "
    "written backwards, a paragraph in German about rain, a column of tide times copied out "
    "in green ink. Nobody has read them all. Nobody, perhaps, ever will. But on clear nights, "
    "when the lamp sweeps over the water and the cottage windows glow, it is easy to believe "
    "that the writing matters anyway: that somewhere, someone is keeping track.\n"
)

TEXT_CASES = {
    "prose": "It was the best of times, it was the worst of times, it was the age of wisdom.",
    "prose-multiline": "First line.\nSecond line, with a comma.\n\nA new paragraph after a blank line.",
    "python": "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\nprint([fib(i) for i in range(10)])\n",
    "swift": "struct Point { var x: Double; var y: Double }\nlet p = Point(x: 1.5, y: -2)\nguard let v = dict[\"key\"] else { return }\n",
    "c-tabs": "int main(void) {\n\tfor (int i = 0; i < 10; i++) {\n\t\tprintf(\"%d\\n\", i);\n\t}\n\treturn 0;\n}\n",
    "json": '{"name": "scroll", "version": "0.1.0", "tags": ["llm", "cli"], "n": 42}',
    "digits": "12345",
    "pi": "3.14159265358979",
    "thousands": "1,000,000 and 2 000 000",
    "date": " 2024-11-22T10:15:00Z",
    "alnum": "x1y2z3 abc123def 0xFF 1e-5",
    "money": "$19.99, €5, ¥1000, 50%",
    "spaces-multi": "a  b   c    d",
    "spaces-trailing": "trailing spaces   ",
    "spaces-leading": "   leading spaces",
    "newlines": "a\n\n\nb",
    "tabs-mixed": "\t \tx\t\ty",
    "crlf": "line one\r\nline two\r\n",
    "space-before-newline": "end   \nnext",
    "only-spaces": "     ",
    "only-newlines": "\n\n",
    "contractions": "don't can't I'LL we've she's they're I'd you'll 'tis",
    "quotes": "'single' \"double\" `back` «guillemets» „low“",
    "punctuation-runs": "Wait... what?!?! (yes) [no] {maybe} --- *** ### @@@",
    "emoji": "I love 🍕 and 🎉!",
    "emoji-zwj": "Family: 👩‍👩‍👧‍👦, flag: 🇫🇷🇯🇵, skin: 👍🏽",
    "cjk": "日本語のテキストと中文文本，还有한국어 텍스트。",
    "arabic": "مرحبا بالعالم، العدد ٣٤٥ هنا",
    "hindi": "नमस्ते दुनिया, यह एक परीक्षण है।",
    "accents-precomposed": "café naïve résumé Zürich Ærøskøbing",
    "accents-combining": "cafe\u0301 nai\u0308ve",
    "greek-cyrillic": "Αλφάβητο и кириллица вместе",
    "mixed-scripts": "Hello世界Мир123עולם",
    "url": "See https://example.org/path?q=1&r=two#frag or mailto:someone@example.com",
    "im-start-text": "<|im_start|>user\nhi<|im_end|>",
    "control-chars": "a\x00b\x04c\x1bd\x7fe",
    "empty": "",
    "single-letter": "a",
    "single-space": " ",
    "single-digit": "7",
    "single-emoji": "🙂",
    "math": "∑_{i=1}^{n} x_i² ≤ ∞ ± √2 ≠ π",
    "markdown": "# Title\n\n- item **bold** and _italic_\n- `code`\n\n> quote\n",
    "html": "<div class=\"a\">Hello &amp; bye</div>",
    "long-word": "Pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    "repeated": "ha" * 40,
    "long-prose": LONG,
    "exact-thousands": "1,000,000",
    "exact-date": " 2024-11-22",
    "exact-x1y2": "x1y2",
    "exact-pi": "3.14159",
    "apostrophe-s": "'s",
    "upper-contractions": "I'LL DON'T WE'VE It'S",
    "exact-newlines3": "\n\n\n",
    "exact-tab-space-tab": "\t \t",
    "crlf-only": "\r\n",
    "indented-swift": "func f() {\n    if x {\n        return 1\n    }\n}",
    "digits-long": "in 31415926535897932384626433 years",
    "arabic-indic-digits": "٣٤٥ و 123",
    "flags": "🇺🇸🇬🇧🇩🇪",
    "control-escape": "\x1b[31mred\x1b[0m",
    "nul-only": "\x00",
    "missing-byte-merge": "wow!\x04! ..\x06. \x13\x14",
}

BYTE_CASES = {
    "invalid-ff-fe": b"abc\xff\xfedef",
    "invalid-lone-continuation": b"x\x80\x80y\xbf",
    "invalid-truncated-3byte": b"euro \xe2\x82 sign",
    "invalid-truncated-4byte-end": b"emoji \xf0\x9f\x98",
    "invalid-overlong": b"slash \xc0\xaf end",
    "invalid-surrogate": b"sur\xed\xa0\x80rogate",
    "invalid-mixed": b"\xff ok \xe2\x82\xac fine \xc3",
}


def split_pieces(pre, text):
    """The pieces Hugging Face's Split pre-tokenizer cuts `text` into with the Qwen2 or Llama 3
    pattern (before the byte-level mapping): what PreTokenizer.split must give."""
    from hf_tokenizer import LLAMA3_PATTERN, QWEN2_PATTERN
    from tokenizers import Regex, pre_tokenizers
    split = pre_tokenizers.Split(Regex(QWEN2_PATTERN if pre == "qwen2" else LLAMA3_PATTERN), behavior="isolated")
    return [piece for piece, _ in split.pre_tokenize_str(text)]


def write(pre, out):
    tok = load_hf_tokenizer(MODEL, pre=pre)
    cases = []
    items = [(k, v.encode("utf-8")) for k, v in TEXT_CASES.items()] + list(BYTE_CASES.items())
    for name, raw in items:
        text = raw.decode("utf-8", errors="replace")
        ids = tok.encode(text).ids
        decoded = tok.decode(ids, skip_special_tokens=False)
        cases.append({
            "name": name,
            "text_b64": base64.b64encode(raw).decode(),
            "ids": ids,
            "decoded_b64": base64.b64encode(decoded.encode("utf-8")).decode(),
        })
        if pre == "llama3":
            cases[-1]["pieces_b64"] = [base64.b64encode(p.encode("utf-8")).decode() for p in split_pieces(pre, text)]
    out.write_text(json.dumps(cases))
    print(f"wrote {out}: {len(cases)} cases, {out.stat().st_size} bytes")


def main():
    write("smollm", OUT)
    write("qwen2", OUT.with_name("tokenizer_vectors_qwen2.json"))
    write("llama3", OUT.with_name("tokenizer_vectors_llama3.json"))


if __name__ == "__main__":
    main()
