/// SentencePiece BPE (`tokenizer.ggml.model = llama`: Gemma, Llama 2, Mistral) as llama.cpp
/// runs it (llm_tokenizer_spm in src/llama-vocab.cpp), so that ids match llama.cpp's:
/// spaces become "▁" (U+2581), the text is split into UTF-8 characters, and the adjacent
/// pair whose joined text is a token with the highest score merges first (on equal scores
/// the leftmost), until no pair is a token. What is left that is no token goes out as byte
/// tokens `<0xXX>` (byte fallback). There is no pre-tokenizer: a whole fragment between
/// user-defined tokens is one merge problem.
struct SentencePiece {
    private let scores: [Float]
    /// Every token's UTF-8 text → id (the last id of a duplicated text wins, as in llama.cpp).
    private let idOf: [ArraySlice<UInt8>: Int32]
    /// byte → id of `<0xXX>`, or of the byte itself as a token; -1 when neither exists.
    private let byteTokens: [Int32]
    /// Whether a fragment that starts the text or follows a special token gets a leading
    /// space (`tokenizer.ggml.add_space_prefix`; llama.cpp's default for SPM is yes, Gemma's
    /// file says no).
    let addsSpacePrefix: Bool

    static let space: [UInt8] = Array("\u{2581}".utf8)

    init(tokens: [String], scores: [Float], addsSpacePrefix: Bool) throws {
        guard scores.count == tokens.count else {
            throw EngineError.invalidArgument("\(scores.count) token scores for \(tokens.count) tokens")
        }
        self.scores = scores
        self.addsSpacePrefix = addsSpacePrefix
        var idOf: [ArraySlice<UInt8>: Int32] = [:]
        idOf.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() { idOf[ArraySlice(t.utf8)] = Int32(i) }
        self.idOf = idOf
        byteTokens = (0..<256).map { b in
            idOf[ArraySlice(Self.byteTokenText(UInt8(b)).utf8)] ?? idOf[[UInt8(b)][...]] ?? -1
        }
    }

    static func byteTokenText(_ b: UInt8) -> String {
        let hex = Array("0123456789ABCDEF")
        return "<0x\(hex[Int(b >> 4)])\(hex[Int(b & 15)])>"
    }

    /// The bytes a token stands for: a byte token its byte, a user-defined token its text as
    /// it is, a normal one its text with "▁" turned back into spaces.
    static func bytes(ofToken text: String, type: Int) -> [UInt8] {
        let utf8 = Array(text.utf8)
        if type == Tokenizer.byteType, utf8.count == 6, text.hasPrefix("<0x"), let b = UInt8(text.dropFirst(3).prefix(2), radix: 16) {
            return [b]
        }
        if type == Tokenizer.userDefinedType { return utf8 }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var i = 0
        while i < utf8.count {
            if i + 3 <= utf8.count, utf8[i] == 0xE2, utf8[i + 1] == 0x96, utf8[i + 2] == 0x81 {
                out.append(0x20)
                i += 3
            } else {
                out.append(utf8[i])
                i += 1
            }
        }
        return out
    }

    /// A pair of adjacent symbols whose joined text is a token. The heap's smallest comes
    /// first: the highest score, then the leftmost (llama.cpp's llm_bigram_spm comparator).
    private struct Bigram: Comparable {
        let score: Float, left: Int32, right: Int32, size: Int32
        static func < (a: Bigram, b: Bigram) -> Bool { a.score != b.score ? a.score > b.score : a.left < b.left }
    }

    func encode(_ fragment: Substring, afterSpecial: Bool, into ids: inout [Int]) {
        // The text with spaces as "▁", one symbol per UTF-8 character.
        var text: [UInt8] = addsSpacePrefix && afterSpecial ? Self.space : []
        text.reserveCapacity(fragment.utf8.count + 8)
        for b in fragment.utf8 { if b == 0x20 { text += Self.space } else { text.append(b) } }
        guard !text.isEmpty else { return }
        var start: [Int32] = [], length: [Int32] = []
        var offset = 0
        while offset < text.count {
            let lead = text[offset]
            let n = min(lead < 0x80 ? 1 : lead >> 5 == 0b110 ? 2 : lead >> 4 == 0b1110 ? 3 : lead >> 3 == 0b11110 ? 4 : 1,
                        text.count - offset)
            start.append(Int32(offset))
            length.append(Int32(n))
            offset += n
        }
        let count = start.count
        var prev = (0..<count).map { Int32($0) - 1 }
        var next = (0..<count).map { $0 + 1 == count ? Int32(-1) : Int32($0 + 1) }
        var heap = MinHeap<Bigram>()
        func tryAdd(_ left: Int32, _ right: Int32) {
            guard left >= 0, right >= 0 else { return }
            let a = Int(start[Int(left)]), size = Int(length[Int(left)] + length[Int(right)])
            guard let id = idOf[text[a ..< a + size]] else { return }
            heap.push(Bigram(score: scores[Int(id)], left: left, right: right, size: Int32(size)))
        }
        for i in 1..<max(1, count) { tryAdd(Int32(i - 1), Int32(i)) }
        while let b = heap.pop() {
            let l = Int(b.left), r = Int(b.right)
            // Stale: one side was merged away, or grew since the pair was seen.
            guard length[l] > 0, length[r] > 0, length[l] + length[r] == b.size else { continue }
            length[l] += length[r]
            length[r] = 0
            next[l] = next[r]
            if next[r] >= 0 { prev[Int(next[r])] = b.left }
            tryAdd(prev[l], b.left)
            tryAdd(b.left, next[l])
        }
        // Every merged symbol is a token; a single character that is none goes out as bytes.
        var i: Int32 = 0
        while i >= 0 {
            let a = Int(start[Int(i)]), n = Int(length[Int(i)])
            if let id = idOf[text[a ..< a + n]] {
                ids.append(Int(id))
            } else {
                for byte in text[a ..< a + n] where byteTokens[Int(byte)] >= 0 { ids.append(Int(byteTokens[Int(byte)])) }
            }
            i = next[Int(i)]
        }
    }
}
