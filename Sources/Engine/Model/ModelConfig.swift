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

    public static let supportedArchitectures = ["llama", "qwen2"]

    public init(gguf: GGUFFile) throws {
        guard let arch = gguf.metadata["general.architecture"]?.string else {
            throw EngineError.missingKey("general.architecture")
        }
        guard Self.supportedArchitectures.contains(arch) else { throw EngineError.unsupportedArchitecture(arch) }
        func int(_ key: String) throws -> Int {
            guard let v = gguf.metadata["\(arch).\(key)"]?.int, v > 0 else { throw EngineError.missingKey("\(arch).\(key)") }
            return v
        }
        architecture = arch
        layerCount = try int("block_count")
        embeddingLength = try int("embedding_length")
        feedForwardLength = try int("feed_forward_length")
        headCount = try int("attention.head_count")
        kvHeadCount = gguf.metadata["\(arch).attention.head_count_kv"]?.int ?? headCount
        contextLength = try int("context_length")
        headDim = gguf.metadata["\(arch).attention.key_length"]?.int ?? embeddingLength / headCount
        ropeBase = gguf.metadata["\(arch).rope.freq_base"]?.float ?? 10000
        rmsEpsilon = Float(gguf.metadata["\(arch).attention.layer_norm_rms_epsilon"]?.float ?? 1e-5)
        ropeMode = arch == "qwen2" ? .neox : .normal
        hasQKVBias = arch == "qwen2"
        ropeScalingType = gguf.metadata["\(arch).rope.scaling.type"]?.string
        ropeScalingFactor = gguf.metadata["\(arch).rope.scaling.factor"]?.float
        ropeOriginalContext = gguf.metadata["\(arch).rope.scaling.original_context_length"]?.int
        let vocab = gguf.metadata["tokenizer.ggml.tokens"]?.array?.count
        guard let vocabSize = gguf.metadata["\(arch).vocab_size"]?.int ?? vocab else {
            throw EngineError.missingKey("tokenizer.ggml.tokens")
        }
        self.vocabSize = vocabSize
        guard headCount % kvHeadCount == 0, headDim % 2 == 0, headCount * headDim > 0 else {
            throw EngineError.malformed(gguf.path, "\(headCount) heads, \(kvHeadCount) KV heads, head dim \(headDim)")
        }
    }

    /// Query heads per KV head (grouped-query attention).
    public var groupSize: Int { headCount / kvHeadCount }
    public var kvDim: Int { kvHeadCount * headDim }
    public var qDim: Int { headCount * headDim }
}
