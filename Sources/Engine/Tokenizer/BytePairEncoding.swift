/// Byte-level BPE (GPT-2 family, `tokenizer.ggml.model = gpt2`): the text split by the
/// pre-tokenizer, each piece's bytes mapped to GPT-2's visible characters, then merged by
/// rank from `tokenizer.ggml.merges`.
final class BytePairEncoding {
    let preTokenizer: PreTokenizer
    /// (left id << 32 | right id) → (merge rank, merged id)
    private let merges: [UInt64: (rank: Int32, id: Int32)]
    /// byte → id of its single-byte token, -1 when the vocabulary lacks it (SmolLM2 has no
    /// token for most control bytes, e.g. 0x04)
    private let byteTokens: [Int32]
    private var pieceCache: [String: [Int32]] = [:]

    init(idOf: [String: Int], merges mergeList: [String], preTokenizer: PreTokenizer) throws {
        self.preTokenizer = preTokenizer
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
    }

    /// The bytes a token of this vocabulary stands for.
    static func bytes(ofToken text: String) -> [UInt8] { ByteLevel.bytes(ofToken: text) ?? Array(text.utf8) }

    func encode(_ text: Substring, into ids: inout [Int]) {
        for piece in preTokenizer.split(String(text)) {
            let key = String(piece)
            if let cached = pieceCache[key] {
                ids.append(contentsOf: cached.lazy.map(Int.init))
                continue
            }
            let encoded = bpe(Array(key.utf8))
            if key.utf8.count <= 64 && pieceCache.count < 50_000 { pieceCache[key] = encoded }
            ids.append(contentsOf: encoded.lazy.map(Int.init))
        }
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
}
