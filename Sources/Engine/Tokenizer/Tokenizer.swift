/// Byte-level BPE (GPT-2 family) built from a GGUF's `tokenizer.ggml.tokens` and
/// `tokenizer.ggml.merges`.
///
/// `encode` treats its text as plain text: `<|im_start|>` typed by a user stays text. Special
/// tokens enter a prompt only through the chat template, by id.
public final class Tokenizer {
    public let tokens: [String]
    public let tokenTypes: [Int]
    public let preTokenizer: PreTokenizer
    public let bos: Int?
    public let eos: Int?
    /// The BOS a text starts with when the model adds one (`tokenizer.ggml.add_bos_token`), as
    /// llama.cpp puts it before a prompt or a perplexity chunk; empty when it adds none.
    public internal(set) var leadingBOS: [Int] = []
    /// Token ids that end a reply: eos plus ChatML's `<|im_end|>` and `<|endoftext|>` when present.
    public let stopTokens: Set<Int>
    var digestMemo: String?           // SessionFingerprint: the vocabulary digest

    private let idOf: [String: Int]
    /// (left id << 32 | right id) → (merge rank, merged id)
    private let merges: [UInt64: (rank: Int32, id: Int32)]
    /// byte → id of its single-byte token, -1 when the vocabulary lacks it (SmolLM2 has no
    /// token for most control bytes, e.g. 0x04)
    private let byteTokens: [Int32]
    /// id → the bytes it stands for (empty for control tokens, which print nothing)
    private let tokenBytes: [[UInt8]]
    private var pieceCache: [String: [Int32]] = [:]

    /// ggml token types (llama.h): 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte.
    public static let controlType = 3

    public convenience init(gguf: GGUFFile) throws {
        let md = gguf.metadata
        guard md["tokenizer.ggml.model"]?.string == "gpt2" else {
            throw EngineError.invalidArgument("unsupported tokenizer '\(md["tokenizer.ggml.model"]?.string ?? "none")' in \(gguf.path) (supported: gpt2 byte-level BPE)")
        }
        guard let tokens = md["tokenizer.ggml.tokens"]?.array?.compactMap(\.string), !tokens.isEmpty else {
            throw EngineError.missingKey("tokenizer.ggml.tokens")
        }
        guard let mergeList = md["tokenizer.ggml.merges"]?.array?.compactMap(\.string) else {
            throw EngineError.missingKey("tokenizer.ggml.merges")
        }
        let preName = md["tokenizer.ggml.pre"]?.string ?? "gpt2"
        guard let pre = PreTokenizer(ggufName: preName) else {
            throw EngineError.invalidArgument("unsupported pre-tokenizer '\(preName)' in \(gguf.path) (supported: smollm, gpt2, qwen2)")
        }
        let types = md["tokenizer.ggml.token_type"]?.array?.compactMap(\.int) ?? []
        try self.init(tokens: tokens, tokenTypes: types, merges: mergeList, preTokenizer: pre,
                      bos: md["tokenizer.ggml.bos_token_id"]?.int, eos: md["tokenizer.ggml.eos_token_id"]?.int)
        if md["tokenizer.ggml.add_bos_token"]?.bool == true, let bos { leadingBOS = [bos] }
    }

    public init(tokens: [String], tokenTypes: [Int], merges mergeList: [String], preTokenizer: PreTokenizer,
                bos: Int?, eos: Int?) throws {
        self.tokens = tokens
        self.tokenTypes = tokenTypes.count == tokens.count ? tokenTypes : Array(repeating: 1, count: tokens.count)
        self.preTokenizer = preTokenizer
        self.bos = bos
        self.eos = eos
        var idOf: [String: Int] = [:]
        idOf.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where idOf[t] == nil { idOf[t] = i }
        self.idOf = idOf

        var merges: [UInt64: (rank: Int32, id: Int32)] = [:]
        merges.reserveCapacity(mergeList.count)
        for (rank, m) in mergeList.enumerated() {
            let parts = m.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let l = idOf[String(parts[0])], let r = idOf[String(parts[1])],
                  let merged = idOf[String(parts[0]) + String(parts[1])] else { continue }
            let key = UInt64(l) << 32 | UInt64(r)
            if merges[key] == nil { merges[key] = (Int32(rank), Int32(merged)) }
        }
        self.merges = merges

        var byteTokens = [Int32](repeating: -1, count: 256)
        for b in 0..<256 {
            if let id = idOf[String(Character(ByteLevel.byteToScalar[b]))] { byteTokens[b] = Int32(id) }
        }
        guard byteTokens.filter({ $0 >= 0 }).count >= 128 else {
            throw EngineError.invalidArgument("vocabulary lacks most single-byte tokens: not a byte-level BPE vocabulary")
        }
        self.byteTokens = byteTokens
        let types = self.tokenTypes
        tokenBytes = tokens.enumerated().map { i, t in
            types[i] == Self.controlType ? [] : (ByteLevel.bytes(ofToken: t) ?? Array(t.utf8))
        }
        var stops = Set<Int>()
        if let eos { stops.insert(eos) }
        for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] { if let id = idOf[name] { stops.insert(id) } }
        stopTokens = stops
    }

    public var vocabularySize: Int { tokens.count }

    /// The id of a token spelled exactly `text` (e.g. a special token), if any.
    public func id(of text: String) -> Int? { idOf[text] }

    /// Plain-text encoding: pre-tokenize, then BPE each piece's bytes.
    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        for piece in preTokenizer.split(text) {
            let key = String(piece)
            if let cached = pieceCache[key] {
                ids.append(contentsOf: cached.lazy.map(Int.init))
                continue
            }
            let encoded = bpe(Array(key.utf8))
            if key.utf8.count <= 64 && pieceCache.count < 50_000 { pieceCache[key] = encoded }
            ids.append(contentsOf: encoded.lazy.map(Int.init))
        }
        return ids
    }

    /// A possible merge of the symbol at `left` with the one after it. Ordered by rank, then
    /// position, so equal pairs merge left to right as in GPT-2's loop.
    private struct Candidate: Comparable {
        let rank: Int32, left: Int, leftId: Int32, rightId: Int32
        static func < (a: Candidate, b: Candidate) -> Bool { (a.rank, a.left) < (b.rank, b.left) }
    }

    /// Applies merges to one piece, lowest rank first (the GPT-2 algorithm), in
    /// O(n log n): symbols form a linked list and candidate merges wait in a heap, checked
    /// for staleness when popped. (The naive rescan-per-merge loop is O(n²) and took minutes
    /// on a 3 KB run of punctuation — one pre-token piece.)
    private func bpe(_ bytes: [UInt8]) -> [Int32] {
        // A byte with no token is dropped, as Hugging Face's BPE does without an unk token.
        var sym = bytes.map { byteTokens[Int($0)] }.filter { $0 >= 0 }
        let n = sym.count
        guard n > 1 else { return sym }
        var next = Array(1...n)              // n marks the end
        var prev = Array(-1..<(n - 1))
        var heap = MinHeap<Candidate>()
        func consider(_ i: Int) {
            guard i >= 0, next[i] < n else { return }
            if let m = merges[UInt64(UInt32(sym[i])) << 32 | UInt64(UInt32(sym[next[i]]))] {
                heap.push(Candidate(rank: m.rank, left: i, leftId: sym[i], rightId: sym[next[i]]))
            }
        }
        for i in 0..<(n - 1) { consider(i) }
        while let c = heap.pop() {
            let r = next[c.left]
            // Stale: the left symbol was merged away or changed, or its neighbour changed.
            guard sym[c.left] == c.leftId, r < n, sym[r] == c.rightId else { continue }
            sym[c.left] = merges[UInt64(UInt32(c.leftId)) << 32 | UInt64(UInt32(c.rightId))]!.id
            sym[r] = -1
            next[c.left] = next[r]
            if next[r] < n { prev[next[r]] = c.left }
            consider(prev[c.left])
            consider(c.left)
        }
        var out: [Int32] = []
        var i = 0
        while i < n { out.append(sym[i]); i = next[i] }
        return out
    }

    /// The bytes token `id` stands for; empty for control tokens and ids out of range.
    public func bytes(of id: Int) -> [UInt8] {
        id >= 0 && id < tokenBytes.count ? tokenBytes[id] : []
    }

    /// Decodes ids to text; invalid UTF-8 becomes U+FFFD.
    public func decode(_ ids: [Int]) -> String {
        String(decoding: ids.flatMap { bytes(of: $0) }, as: UTF8.self)
    }
}
