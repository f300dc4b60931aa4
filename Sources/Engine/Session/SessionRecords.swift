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

    init(fingerprint: SessionFingerprint, model: String, summary: SessionSummary, kvEncoding: SessionFile.KVEncoding, flags: [String]) {
        self.fingerprint = fingerprint
        self.model = model
        (savedAt, tokens, memoryTokens, messages, title) = (summary.savedAt, summary.tokens, summary.memoryTokens, summary.messages, summary.title)
        self.kvEncoding = kvEncoding
        self.flags = flags
    }

    /// What a listing shows: as the first save wrote it, or as the last frame read says.
    var summary: SessionSummary {
        get { SessionSummary(savedAt: savedAt, tokens: tokens, memoryTokens: memoryTokens, messages: messages, title: title) }
        set { (savedAt, tokens, memoryTokens, messages, title) = (newValue.savedAt, newValue.tokens, newValue.memoryTokens, newValue.messages, newValue.title) }
    }
}

/// What each save (a frame of SessionFile) says of the conversation for a listing.
struct SessionSummary: Codable {
    var savedAt: Double
    var tokens: Int
    var memoryTokens: Int
    var messages: Int
    var title: String
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
    /// Where the last document ends in the stream (absent: none, or saved before).
    public var documentEnd: Int?

    public init(messages: [ChatMessage], systemPrompt: String?, raw: Bool, sampler: Sampler, rereadCopies: [Range<Int>] = [],
                documentEnd: Int? = nil) {
        self.messages = messages
        self.systemPrompt = systemPrompt
        self.raw = raw
        self.sampler = sampler.settings
        rngState = sampler.rng.state
        self.rereadCopies = rereadCopies
        self.documentEnd = documentEnd
    }

    /// The sampler as it was saved.
    public var restoredSampler: Sampler {
        var s = Sampler(settings: sampler)
        s.rng = RandomGenerator(seed: rngState)
        return s
    }

    var title: String {
        let first = messages.first { $0.role == .user }?.content ?? ""
        // The first line with text, trimmed: a piped license began with 20 spaces of centring.
        let line = first.split(whereSeparator: \.isNewline).lazy.map { $0.trimmingCharacters(in: .whitespaces) }.first { !$0.isEmpty } ?? ""
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
