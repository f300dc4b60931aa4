/// Hyperparameters of a llama-like model, read from GGUF metadata (`{arch}.*` keys).
public struct ModelConfig: Equatable {
    public enum RopeMode: Int32 {
        /// llama.cpp "normal": rotate adjacent pairs. llama GGUFs need it because the
        /// converter permuted Q/K rows from Hugging Face's rotate-half layout.
        case normal = 0
        /// rotate-half (GPT-NeoX), as qwen2 GGUFs keep it.
        case neox = 2
    }

    public var architecture: String
    public var layerCount: Int          // {arch}.block_count
    public var embeddingLength: Int     // d_model
    public var feedForwardLength: Int   // FFN hidden size
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var vocabSize: Int
    public var contextLength: Int       // trained context
    public var ropeBase: Double
    public var ropeMode: RopeMode
    public var rmsEpsilon: Float
    /// RoPE scaling as the file states it ("none", "linear", "yarn"), read by RopeScaling(config:).
    public var ropeScalingType: String?
    public var ropeScalingFactor: Double?
    public var ropeOriginalContext: Int?
    /// qwen2 has Q/K/V biases.
    public var hasQKVBias: Bool
    /// Gemma's block: each head's q and k RMS-normed before RoPE, the attention and FFN
    /// outputs RMS-normed before their residual adds, GELU (tanh) instead of SiLU in the
    /// gated FFN, and embeddings scaled by √d_model.
    public var isGemma: Bool
    /// Gemma 3's local layers (`{arch}.attention.sliding_window`): each attends to its own
    /// last `localWindow` positions only (itself included), with RoPE base `localRopeBase`;
    /// the other (global) layers attend to everything the cache holds. nil: all layers global.
    public var localWindow: Int?
    public var localLayers: [Bool]
    public var localRopeBase: Double

    /// Each head's q and k RMS-normed before RoPE (Gemma 3, Qwen 3).
    public var hasQKNorm: Bool

    public static let supportedArchitectures = ["llama", "qwen2", "qwen3", "gemma3"]

    /// Bounds no real model comes near. Every size is checked against them before anything
    /// is sized from it: a crafted file with 0 KV heads divided by zero, key_length 2^62
    /// overflowed, block_count 2^32 asked for 1.8 TB and context_length 10^8 for 23 GB.
    static let limits = (layers: 1024, heads: 1024, headDim: 1024, embedding: 1 << 16, feedForward: 1 << 20,
                         vocab: 1 << 22, context: maxContext, ropeFactor: 1024.0)
    /// The most positions any context, window or RoPE original context may name (2^24).
    public static let maxContext = 1 << 24

    public init(gguf: GGUFFile) throws {
        let md = gguf.metadata
        guard let arch = md["general.architecture"]?.string else {
            throw EngineError.missingKey("general.architecture")
        }
        guard Self.supportedArchitectures.contains(arch) else { throw EngineError.unsupportedArchitecture(arch) }
        func bad(_ what: String) -> EngineError { .malformed(gguf.path, what) }
        func int(_ key: String, _ range: ClosedRange<Int>, default fallback: Int? = nil) throws -> Int {
            guard let v = md["\(arch).\(key)"]?.int ?? fallback else { throw EngineError.missingKey("\(arch).\(key)") }
            guard range.contains(v) else { throw bad("\(arch).\(key) = \(v), outside \(range.lowerBound)…\(range.upperBound)") }
            return v
        }
        func real(_ key: String, default fallback: Double? = nil, _ valid: (Double) -> Bool) throws -> Double? {
            guard let v = md["\(arch).\(key)"]?.float ?? fallback else { return nil }
            guard valid(v) else { throw bad("\(arch).\(key) = \(v) is not a usable value") }
            return v
        }
        let L = Self.limits
        architecture = arch
        layerCount = try int("block_count", 1...L.layers)
        embeddingLength = try int("embedding_length", 1...L.embedding)
        feedForwardLength = try int("feed_forward_length", 1...L.feedForward)
        headCount = try int("attention.head_count", 1...L.heads)
        kvHeadCount = try int("attention.head_count_kv", 1...headCount, default: headCount)
        contextLength = try int("context_length", 1...L.context)
        headDim = try int("attention.key_length", 2...L.headDim, default: max(2, embeddingLength / headCount))
        ropeBase = try real("rope.freq_base", default: 10000) { $0.isFinite && $0 > 1 }!
        rmsEpsilon = Float(try real("attention.layer_norm_rms_epsilon", default: 1e-5) { $0.isFinite && $0 > 0 && $0 < 1 }!)
        ropeMode = arch == "llama" ? .normal : .neox
        hasQKVBias = arch == "qwen2"
        isGemma = arch == "gemma3"
        hasQKNorm = isGemma || arch == "qwen3"
        // Gemma 3: five local layers, then a global one (llama.cpp's default pattern of 6,
        // unless the file gives `attention.sliding_window_pattern`); local RoPE base 10000.
        localWindow = arch == "gemma3" ? try int("attention.sliding_window", 0...L.context, default: 0) : 0
        if localWindow == 0 { localWindow = nil }
        let pattern = try int("attention.sliding_window_pattern", 1...L.layers, default: 6)
        localLayers = (0..<layerCount).map { [localWindow] in localWindow != nil && $0 % pattern < pattern - 1 }
        localRopeBase = try real("rope.freq_base_swa", default: 10000) { $0.isFinite && $0 > 1 }!
        ropeScalingType = md["\(arch).rope.scaling.type"]?.string
        ropeScalingFactor = try real("rope.scaling.factor") { $0.isFinite && $0 > 0 && $0 <= L.ropeFactor }
        ropeOriginalContext = md["\(arch).rope.scaling.original_context_length"] == nil ? nil
            : try int("rope.scaling.original_context_length", 1...L.context)
        guard headCount % kvHeadCount == 0, headDim % 2 == 0 else {
            throw bad("\(headCount) heads, \(kvHeadCount) KV heads, head dim \(headDim)")
        }
        // The vocabulary is the embedding's rows (Qwen pads them past the token list), and the
        // token list, BOS and EOS must lie inside them: an id beyond the rows read past the
        // embedding.
        guard let embedding = gguf.tensors["token_embd.weight"] else { throw EngineError.missingTensor("token_embd.weight") }
        guard embedding.dims.count == 2, embedding.dims[0] == embeddingLength, embedding.dims[1] <= L.vocab else {
            throw EngineError.badTensorShape("token_embd.weight", expected: [embeddingLength, md["\(arch).vocab_size"]?.int ?? 0], found: embedding.dims)
        }
        vocabSize = embedding.dims[1]
        guard let tokens = md["tokenizer.ggml.tokens"]?.array?.count else { throw EngineError.missingKey("tokenizer.ggml.tokens") }
        guard (1...vocabSize).contains(tokens) else { throw bad("\(tokens) tokens for \(vocabSize) embedding rows") }
        for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"] {
            if let id = md[key]?.int, !(0..<tokens).contains(id) { throw bad("\(key) = \(id), outside the \(tokens) tokens") }
        }
        // Every layer's tensors must be there before per-layer state is sized from the count.
        guard gguf.tensors["blk.\(layerCount - 1).attn_norm.weight"] != nil else { throw EngineError.missingTensor("blk.\(layerCount - 1).attn_norm.weight") }
    }

    /// Layer l's own window when it is a local layer, else nil.
    public func window(ofLayer l: Int) -> Int? { localLayers[l] ? localWindow : nil }

    /// Query heads per KV head (grouped-query attention).
    public var groupSize: Int { headCount / kvHeadCount }
    public var kvDim: Int { kvHeadCount * headDim }
    public var qDim: Int { headCount * headDim }
}
