import CKernels
import Foundation

/// What must match for a saved cache to mean the same thing in this run: the model (shapes,
/// tensor table, vocabulary) and the settings that decide which keys are where and how they
/// were rotated. Part of the session header (SessionFile).
public struct SessionFingerprint: Codable, Equatable {
    public var architecture: String
    public var layers: Int, heads: Int, kvHeads: Int, headDim: Int, vocab: Int
    public var tensors: String        // FNV-1a 64 of every tensor's name, type and shape, in file order
    public var vocabulary: String     // FNV-1a 64 of every token's text and type
    public var sinks: Int
    public var window: Int?           // nil: dense
    public var capacity: Int
    public var kv: String
    public var rope: String           // kind, factor, original context, betas, ext and attn factors
    public var memory: String?        // block size, top blocks, refresh, candidates, positions; nil: off

    init(model: Transformer, tokenizer: Tokenizer, cache: KVCache) {
        let c = model.config
        architecture = c.architecture
        (layers, heads, kvHeads, headDim, vocab) = (c.layerCount, c.headCount, c.kvHeadCount, c.headDim, c.vocabSize)
        tensors = model.tensorDigest
        vocabulary = tokenizer.digest
        sinks = cache.policy.sinks
        window = cache.policy.window
        capacity = cache.capacity
        kv = cache.precision.rawValue
        let s = model.rope.scaling
        rope = "\(s.kind.rawValue) ×\(s.factor) original \(s.originalContext) beta \(s.betaFast)/\(s.betaSlow) ext \(s.extFactor.map { "\($0)" } ?? "auto") attn \(s.attnFactor)"
        memory = cache.memory.map {
            let m = $0.settings
            return "blocks of \(m.blockSize), top \(m.topBlocks), refresh \(m.refreshEvery), candidates ×\(m.candidateFactor), positions \(m.positions.rawValue)"
        }
    }

    /// The first thing that differs, said so the user knows which flag to pass; nil if none.
    func difference(from now: SessionFingerprint) -> String? {
        if architecture != now.architecture || layers != now.layers || heads != now.heads || kvHeads != now.kvHeads
            || headDim != now.headDim || vocab != now.vocab || tensors != now.tensors || vocabulary != now.vocabulary {
            return "it was made with another model (\(architecture), \(layers) layers, vocabulary \(vocab), tensors \(tensors); this one: \(now.architecture), \(now.layers) layers, vocabulary \(now.vocab), tensors \(now.tensors))"
        }
        func cacheText(_ f: SessionFingerprint) -> String { f.window.map { "--sinks \(f.sinks) --window \($0)" } ?? "--dense (\(f.capacity))" }
        if sinks != now.sinks || window != now.window || capacity != now.capacity {
            return "it was saved with \(cacheText(self)), this run has \(cacheText(now)): leave those flags out to resume with its own"
        }
        if kv != now.kv { return "it was saved with --kv \(kv), this run has --kv \(now.kv)" }
        if rope != now.rope { return "it was saved with RoPE \(rope), this run has \(now.rope): leave the --rope-* flags out to resume with its own" }
        if memory != now.memory {
            return "it was saved with memory \(memory ?? "off"), this run has \(now.memory ?? "off"): leave the memory flags out to resume with its own"
        }
        return nil
    }
}

extension Transformer {
    /// FNV-1a 64 of every tensor's name, type and shape, in file order (computed once).
    var tensorDigest: String {
        if let d = digestMemo { return d }
        var t = FNV1a()
        for name in gguf.tensorNames {
            let info = gguf.tensors[name]!
            t.add(name); t.add(String(info.type)); t.add(info.dims.map(String.init).joined(separator: "x"))
        }
        digestMemo = t.hex
        return t.hex
    }
}

extension Tokenizer {
    /// FNV-1a 64 of every token's text and type (computed once).
    var digest: String {
        if let d = digestMemo { return d }
        var v = FNV1a()
        for (token, type) in zip(tokens, tokenTypes) { v.add(token); v.add(String(type)) }
        digestMemo = v.hex
        return v.hex
    }
}

/// The session header: the fingerprint and what a listing shows.
public struct SessionHeader: Codable {
    public var fingerprint: SessionFingerprint
    public var model: String           // the model file's name
    public var savedAt: Double         // seconds since 1970
    public var tokens: Int             // tokens seen
    public var memoryTokens: Int
    public var messages: Int
    public var kvEncoding: SessionFile.KVEncoding
    public var title: String           // the first user message, shortened
    /// Command-line flags that rebuild this cache, RoPE and memory, so that a resume without
    /// flags takes them (absent in sessions saved before).
    public var flags: [String]?
}

/// The conversation around the cache: what the chat template needs to continue, and the
/// sampler exactly as it was (settings and RNG state), so a resumed reply is the same reply.
public struct SessionConversation: Codable {
    public var messages: [ChatMessage]
    public var systemPrompt: String?
    public var raw: Bool
    public var sampler: SamplerSettings
    public var rngState: UInt64
    /// Stream ranges that are passages read again before a question (PassageIndex.copies);
    /// absent in sessions saved before passages were re-read.
    public var rereadCopies: [Range<Int>]?

    public init(messages: [ChatMessage], systemPrompt: String?, raw: Bool, sampler: Sampler, rereadCopies: [Range<Int>] = []) {
        self.messages = messages
        self.systemPrompt = systemPrompt
        self.raw = raw
        self.sampler = sampler.settings
        rngState = sampler.rng.state
        self.rereadCopies = rereadCopies
    }

    /// The sampler as it was saved.
    public var restoredSampler: Sampler {
        var s = Sampler(settings: sampler)
        s.rng = RandomGenerator(seed: rngState)
        return s
    }

    var title: String {
        let first = messages.first { $0.role == .user }?.content ?? ""
        let line = first.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        return line.count > 60 ? String(line.prefix(59)) + "…" : line
    }
}

/// What each layer and KV head of the block memory recalled last, and the ranking state
/// decoding re-ranks from (BlockMemory.rank).
struct RankingState: Codable {
    var recalled: [[[Int]]]     // [layer][kv_head] block ids
    var scores: [[[Float]]]
    var candidates: [[[Int]]]
    var rankedBlocks: [Int]
    var sinceRanking: [Int]

    init(_ m: BlockMemory) {
        recalled = m.recalled.map { $0.map { $0.map(\.block) } }
        scores = m.recalled.map { $0.map { $0.map(\.score) } }
        candidates = m.candidates
        rankedBlocks = m.rankedBlocks
        sinceRanking = m.sinceRanking
    }

    /// Installs the state after checking every index, and reloads the recalled blocks.
    func apply(to m: BlockMemory) throws {
        let layers = m.layerCount, heads = m.kvHeadCount, blocks = m.blocks
        func valid(_ x: [[[Int]]], limit: Int) -> Bool {
            x.count == layers && x.allSatisfy { $0.count == heads && $0.allSatisfy { $0.count <= limit && $0.allSatisfy { (0..<blocks).contains($0) } } }
        }
        let keep = m.settings.candidatesKept
        guard valid(recalled, limit: m.settings.topBlocks), valid(candidates, limit: keep),
              scores.count == layers, zip(scores, recalled).allSatisfy({ zip($0, $1).allSatisfy { $0.count == $1.count } && $0.count == $1.count }),
              rankedBlocks.count == layers, rankedBlocks.allSatisfy({ (0...blocks).contains($0) }),
              sinceRanking.count == layers, sinceRanking.allSatisfy({ $0 >= 0 })
        else { throw Zstd.Failure(description: "memory ranking record is inconsistent") }
        m.candidates = candidates
        m.rankedBlocks = rankedBlocks
        m.sinceRanking = sinceRanking
        for l in 0..<layers {
            for h in 0..<heads {
                let loaded = Set(m.load(layer: l, head: h, blocks: recalled[l][h]))
                m.recalled[l][h] = zip(recalled[l][h], scores[l][h]).filter { loaded.contains($0.0) }.map { (block: $0.0, score: $0.1) }
            }
        }
    }
}

/// FNV-1a, 64 bits: a digest for fingerprints (not for security: it tells models apart).
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ s: String) {
        for byte in s.utf8 { value = (value ^ UInt64(byte)) &* 0x100_0000_01b3 }
        value = value &* 0x100_0000_01b3   // a 0 byte ends each string
    }
    var hex: String { String(value, radix: 16) }
}

/// The body's writer: small values gather in a buffer, large arrays go straight to zstd.
final class BodyWriter {
    private let zstd: Zstd.Writer
    private var buffer: [UInt8] = []

    init(fd: Int32) throws {
        zstd = try Zstd.Writer(fd: fd)
        buffer.reserveCapacity(1 << 16)
    }

    func put<T: FixedWidthInteger>(_ value: T) throws { try put(bytes: withUnsafeBytes(of: value.littleEndian) { Array($0) }) }
    func put(bytes: [UInt8]) throws {
        buffer += bytes
        if buffer.count >= 1 << 16 { try flush() }
    }
    func put<T>(array: [T]) throws { try array.withUnsafeBytes { try put(raw: $0) } }
    func put(raw: UnsafeRawBufferPointer) throws {
        if raw.count < 4096 { try put(bytes: Array(raw)); return }
        try flush()
        try zstd.write(raw)
    }
    func finish() throws {
        try flush()
        try zstd.finish()
    }
    private func flush() throws {
        try buffer.withUnsafeBytes { try zstd.write($0) }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// The body's reader. Arrays are read in pieces, so a damaged count fails at the end of the
/// data instead of asking for an absurd allocation up front; and the data may not expand
/// beyond what a real session compresses to, so a small crafted file cannot make loading
/// allocate or write gigabytes (a 35 KB file whose zstd frame was zeros claimed 268M tokens
/// and took 3.5 GB). Real bodies are KV rows that compress ~1.1–1.6×; text and token ids,
/// which compress far better, are a few MB at most, within the slack.
final class BodyReader {
    private let zstd: Zstd.Reader
    static let maxExpansion = 64, expansionSlack = 32 << 20

    init(fd: Int32) throws { zstd = try Zstd.Reader(fd: fd) }

    func get<T: FixedWidthInteger>(_: T.Type) throws -> T {
        var v = T.zero
        try withUnsafeMutableBytes(of: &v) { try read(into: $0) }
        return T(littleEndian: v)
    }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws {
        guard buffer.count > 0 else { return }
        try zstd.read(into: buffer)
        guard zstd.decompressedBytes <= Self.expansionSlack + Self.maxExpansion * zstd.compressedBytes else {
            throw Zstd.Failure(description: "the data expands \(zstd.decompressedBytes / max(1, zstd.compressedBytes))-fold, more than any session (crafted?)")
        }
    }
    func bytes(count: Int, limit: Int) throws -> [UInt8] {
        guard count <= limit else { throw Zstd.Failure(description: "record of \(count) bytes is implausible") }
        return try array(UInt8.self, count: count)
    }
    func array<T>(_: T.Type, count: Int) throws -> [T] {
        let piece = max(1, (1 << 20) / MemoryLayout<T>.stride)
        var out: [T] = []
        while out.count < count {
            let n = min(piece, count - out.count)
            let part = try [T](unsafeUninitializedCapacity: n) { buf, initialized in
                try read(into: UnsafeMutableRawBufferPointer(buf))
                initialized = n
            }
            out += part
        }
        return out
    }
    func finish() throws { try zstd.finish() }
}

/// The "int8" session encoding of f32 rows (session_codec.c): for `rows` rows of head_dim,
/// the int8 codes then the f16 (mean, step) of each group of 64 tokens and channel.
final class RowCodec {
    /// Steps per rms deviation: the quantization error is ~rms/(steps·√12) per value.
    /// 10 is measured (README, Sessions): resumed perplexity within 1% and a file ~37% of f16.
    static let steps: Float = 10
    let headDim: Int
    private var codes: [Int8]
    private var params: [UInt16]
    private var floats: [Float]

    init(rows: Int, headDim: Int) {
        self.headDim = headDim
        let n = max(1, rows)
        codes = Array(repeating: 0, count: n * headDim)
        params = Array(repeating: 0, count: Self.paramCount(rows: n, headDim: headDim))
        floats = Array(repeating: 0, count: n * headDim)
    }

    static func paramCount(rows: Int, headDim: Int) -> Int {
        (rows + Int(CK_SESSION_GROUP) - 1) / Int(CK_SESSION_GROUP) * headDim * 2
    }

    func encode(_ x: UnsafePointer<Float>, rows: Int, to w: BodyWriter) throws {
        guard rows > 0 else { return }
        let p = Self.paramCount(rows: rows, headDim: headDim)
        codes.withUnsafeMutableBufferPointer { c in
            params.withUnsafeMutableBufferPointer { ck_session_encode(x, Int64(rows), Int32(headDim), Self.steps, c.baseAddress, $0.baseAddress) }
        }
        try codes.withUnsafeBytes { try w.put(raw: UnsafeRawBufferPointer(rebasing: $0[..<(rows * headDim)])) }
        try params.withUnsafeBytes { try w.put(raw: UnsafeRawBufferPointer(rebasing: $0[..<(p * 2)])) }
    }

    func decode(from r: BodyReader, rows: Int, into y: UnsafeMutablePointer<Float>) throws {
        guard rows > 0 else { return }
        let p = Self.paramCount(rows: rows, headDim: headDim)
        try codes.withUnsafeMutableBytes { try r.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<(rows * headDim)])) }
        try params.withUnsafeMutableBytes { try r.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<(p * 2)])) }
        codes.withUnsafeBufferPointer { c in
            params.withUnsafeBufferPointer { ck_session_decode(c.baseAddress, $0.baseAddress, Int64(rows), Int32(headDim), y) }
        }
    }

    // A memory blob (BlockMemory.blobRows) is re-coded per (keys or values, KV head):
    // dequantized, then encoded like cache rows; loading quantizes them back.
    func encodeBlob(_ blob: UnsafeRawPointer, memory: BlockMemory, to w: BodyWriter) throws {
        let b = memory.settings.blockSize, hd = headDim, groups = hd / Int(CK_KV_GROUP)
        for part in 0..<2 {
            for h in 0..<memory.kvHeadCount {
                let (c, s) = memory.blobRows(blob, part: part, head: h)
                try floats.withUnsafeMutableBufferPointer { f in
                    for row in 0..<b { ck_dequantize_kv_row(c + row * hd, s + row * groups, f.baseAddress! + row * hd, Int32(hd)) }
                    try encode(f.baseAddress!, rows: b, to: w)
                }
            }
        }
    }

    func decodeBlob(from r: BodyReader, memory: BlockMemory) throws {
        let b = memory.settings.blockSize, hd = headDim, groups = hd / Int(CK_KV_GROUP)
        for part in 0..<2 {
            for h in 0..<memory.kvHeadCount {
                let (c, s) = memory.blobRows(memory.blob, part: part, head: h)
                try floats.withUnsafeMutableBufferPointer { f in
                    try decode(from: r, rows: b, into: f.baseAddress!)
                    try SessionFile.requireFinite(UnsafeBufferPointer(start: f.baseAddress!, count: b * hd), "memory row")
                    for row in 0..<b { ck_quantize_kv_row(f.baseAddress! + row * hd, c + row * hd, s + row * groups, Int32(hd)) }
                }
            }
        }
    }
}
