/// Splits text into the pieces that BPE encodes one by one, as the GGUF's
/// `tokenizer.ggml.pre` names it. Hand-written matchers instead of a regex engine: they run
/// on Unicode scalars exactly as the Oniguruma/fancy-regex patterns of Hugging Face
/// `tokenizers` do, and are much faster than Swift Regex.
public enum PreTokenizer: String {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// SmolLM: every numeric character is its own piece (HF `Digits(individual_digits=true)`,
    /// which tests Rust's `char::is_numeric`, so Arabic-Indic ٣ splits like 3), then the
    /// GPT-2 pattern on what is left.
    case smollm
    /// Qwen2 (the llama-3 pattern with single digits):
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case qwen2
    /// Llama 3 (`llama-bpe`): the same pattern with numbers in pieces of up to three digits,
    /// `\p{N}{1,3}` ("12345" → "123", "45").
    case llama3

    /// The pre-tokenizer for a GGUF `tokenizer.ggml.pre` value; nil if unknown.
    public init?(ggufName: String) {
        switch ggufName {
        case "smollm": self = .smollm
        case "gpt2", "default", "gpt-2", "starcoder", "refact": self = .gpt2
        case "qwen2", "deepseek-llm": self = .qwen2
        case "llama3", "llama-bpe": self = .llama3
        default: return nil
        }
    }

    public func split(_ text: String) -> [Substring.UnicodeScalarView] {
        let scalars = Array(text.unicodeScalars)
        var ranges: [Range<Int>] = []
        switch self {
        case .gpt2:
            Self.splitGPT2(scalars, 0..<scalars.count, into: &ranges)
        case .smollm:
            var start = 0
            for i in 0..<scalars.count where Self.isNumber(scalars[i]) {
                if start < i { Self.splitGPT2(scalars, start..<i, into: &ranges) }
                ranges.append(i..<i + 1)
                start = i + 1
            }
            if start < scalars.count { Self.splitGPT2(scalars, start..<scalars.count, into: &ranges) }
        case .qwen2:
            Self.splitQwen2(scalars, digitsPerPiece: 1, into: &ranges)
        case .llama3:
            Self.splitQwen2(scalars, digitsPerPiece: 3, into: &ranges)
        }
        let view = text.unicodeScalars
        // Map scalar offsets back to string indices in one pass.
        var indices: [String.UnicodeScalarView.Index] = []
        indices.reserveCapacity(scalars.count + 1)
        var idx = view.startIndex
        for _ in 0..<scalars.count { indices.append(idx); idx = view.index(after: idx) }
        indices.append(view.endIndex)
        return ranges.map { view[indices[$0.lowerBound]..<indices[$0.upperBound]] }
    }

    // MARK: character classes

    static func isLetter(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }
    static func isNumber(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }
    static func isSpace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace }
    static func isOther(_ s: Unicode.Scalar) -> Bool { !isSpace(s) && !isLetter(s) && !isNumber(s) }
    static func isNewline(_ s: Unicode.Scalar) -> Bool { s == "\r" || s == "\n" }

    /// Length of the contraction ('s 't 're 've 'm 'll 'd) starting at i, or 0.
    static func contraction(_ t: [Unicode.Scalar], _ i: Int, end: Int, caseInsensitive: Bool) -> Int {
        guard t[i] == "'", i + 1 < end else { return 0 }
        func lower(_ s: Unicode.Scalar) -> Unicode.Scalar {
            caseInsensitive && s.value >= 0x41 && s.value <= 0x5a ? Unicode.Scalar(s.value + 32)! : s
        }
        let a = lower(t[i + 1])
        if a == "s" || a == "t" || a == "m" || a == "d" { return 2 }
        if i + 2 < end {
            let b = lower(t[i + 2])
            if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") { return 3 }
        }
        return 0
    }

    /// End of the run of scalars from i satisfying `pred`.
    static func run(_ t: [Unicode.Scalar], from i: Int, end: Int, _ pred: (Unicode.Scalar) -> Bool) -> Int {
        var j = i
        while j < end && pred(t[j]) { j += 1 }
        return j
    }

    /// `\s+(?!\S)|\s+` at i (t[i] is whitespace): the run, less its last scalar when a
    /// non-space follows and the run is longer than one (that scalar then prefixes the next
    /// word, as " word").
    static func whitespace(_ t: [Unicode.Scalar], _ i: Int, end: Int) -> Int {
        let j = run(t, from: i, end: end, isSpace)
        return (j < end && j - i > 1) ? j - 1 : j
    }

    static func splitGPT2(_ t: [Unicode.Scalar], _ range: Range<Int>, into out: inout [Range<Int>]) {
        var i = range.lowerBound
        let end = range.upperBound
        while i < end {
            var j: Int
            let c = contraction(t, i, end: end, caseInsensitive: false)
            if c > 0 {
                j = i + c
            } else {
                // ` ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+`: an optional space, then a run of one class.
                let k = (t[i] == " " && i + 1 < end) ? i + 1 : i
                if isLetter(t[k]) {
                    j = run(t, from: k, end: end, isLetter)
                } else if isNumber(t[k]) {
                    j = run(t, from: k, end: end, isNumber)
                } else if isOther(t[k]) {
                    j = run(t, from: k, end: end, isOther)
                } else {
                    j = whitespace(t, i, end: end)
                }
            }
            out.append(i..<j)
            i = j
        }
    }

    /// The Qwen2 / Llama 3 pattern; `digitsPerPiece`: 1 for Qwen2's `\p{N}`, 3 for Llama 3's `\p{N}{1,3}`.
    static func splitQwen2(_ t: [Unicode.Scalar], digitsPerPiece: Int, into out: inout [Range<Int>]) {
        var i = 0
        let end = t.count
        while i < end {
            var j = 0
            let c = contraction(t, i, end: end, caseInsensitive: true)
            if c > 0 {
                j = i + c
            } else if isLetter(t[i]) || (!isNewline(t[i]) && !isLetter(t[i]) && !isNumber(t[i]) && i + 1 < end && isLetter(t[i + 1])) {
                // `[^\r\n\p{L}\p{N}]?\p{L}+`
                j = run(t, from: isLetter(t[i]) ? i : i + 1, end: end, isLetter)
            } else if isNumber(t[i]) {
                j = min(run(t, from: i, end: end, isNumber), i + digitsPerPiece)
            } else if let k = Optional((t[i] == " " && i + 1 < end) ? i + 1 : i), isOther(t[k]) {
                // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
                j = run(t, from: run(t, from: k, end: end, isOther), end: end, isNewline)
            } else {
                // `\s*[\r\n]+`: whitespace up to and including the last newline of the run.
                let ws = run(t, from: i, end: end, isSpace)
                var lastNewline = -1
                for p in i..<ws where isNewline(t[p]) { lastNewline = p }
                if lastNewline >= 0 {
                    j = run(t, from: lastNewline, end: ws, isNewline)
                } else {
                    j = whitespace(t, i, end: end)
                }
            }
            out.append(i..<j)
            i = j
        }
    }
}
