/// The weights of one transformer block. Shapes are [rows][cols] = [out][in].
public struct LayerWeights {
    public let attnNorm: Vector      // [d_model]
    public let wq: Matrix            // [n_heads * head_dim][d_model]
    public let wk: Matrix            // [n_kv_heads * head_dim][d_model]
    public let wv: Matrix            // [n_kv_heads * head_dim][d_model]
    public let wo: Matrix            // [d_model][n_heads * head_dim]
    public let bq, bk, bv: Vector?   // qwen2 only: [q_dim], [kv_dim], [kv_dim]
    public let qNorm, kNorm: Vector? // Gemma, Qwen 3: [head_dim], applied to each head
    public let postAttnNorm: Vector? // Gemma: [d_model] on the attention output before the residual add
    public let postFfnNorm: Vector?  // Gemma: [d_model] on the FFN output before the residual add
    public let ffnNorm: Vector       // [d_model]
    public let wGate: Matrix         // [ffn][d_model]
    public let wUp: Matrix           // [ffn][d_model]
    public let wDown: Matrix         // [d_model][ffn]
}

/// All weights of a llama-like model: norms and biases as floats, matrices in the GGUF
/// memory map or, for Q4_1 and Q8_0, repacked once at load for the decode kernels.
public struct ModelWeights {
    public let tokenEmbedding: Matrix   // [vocab][d_model]
    public let layers: [LayerWeights]
    public let outputNorm: Vector       // [d_model]
    /// [vocab][d_model]; the token embedding itself when the model ties them (SmolLM2).
    public let output: Matrix
    /// [head_dim/2] Llama 3.x's RoPE frequency factors (`rope_freqs.weight`), when the file has them.
    public let ropeFrequencyFactors: Vector?
    let storage = RepackedStorage()

    public init(gguf: GGUFFile, config c: ModelConfig) throws {
        let d = c.embeddingLength
        let store = storage
        func matrix(_ name: String, rows: Int, cols: Int) throws -> Matrix {
            store.repacked(try gguf.matrix(name, rows: rows, cols: cols))
        }
        tokenEmbedding = try matrix("token_embd.weight", rows: c.vocabSize, cols: d)
        layers = try (0..<c.layerCount).map { i in
            let p = "blk.\(i)."
            return LayerWeights(
                attnNorm: try gguf.vector(p + "attn_norm.weight", count: d),
                wq: try matrix(p + "attn_q.weight", rows: c.qDim, cols: d),
                wk: try matrix(p + "attn_k.weight", rows: c.kvDim, cols: d),
                wv: try matrix(p + "attn_v.weight", rows: c.kvDim, cols: d),
                wo: try matrix(p + "attn_output.weight", rows: d, cols: c.qDim),
                bq: c.hasQKVBias ? try gguf.vector(p + "attn_q.bias", count: c.qDim) : nil,
                bk: c.hasQKVBias ? try gguf.vector(p + "attn_k.bias", count: c.kvDim) : nil,
                bv: c.hasQKVBias ? try gguf.vector(p + "attn_v.bias", count: c.kvDim) : nil,
                qNorm: c.hasQKNorm ? try gguf.vector(p + "attn_q_norm.weight", count: c.headDim) : nil,
                kNorm: c.hasQKNorm ? try gguf.vector(p + "attn_k_norm.weight", count: c.headDim) : nil,
                postAttnNorm: c.isGemma ? try gguf.vector(p + "post_attention_norm.weight", count: d) : nil,
                postFfnNorm: c.isGemma ? try gguf.vector(p + "post_ffw_norm.weight", count: d) : nil,
                ffnNorm: try gguf.vector(p + "ffn_norm.weight", count: d),
                wGate: try matrix(p + "ffn_gate.weight", rows: c.feedForwardLength, cols: d),
                wUp: try matrix(p + "ffn_up.weight", rows: c.feedForwardLength, cols: d),
                wDown: try matrix(p + "ffn_down.weight", rows: d, cols: c.feedForwardLength))
        }
        outputNorm = try gguf.vector("output_norm.weight", count: d)
        output = gguf.tensors["output.weight"] != nil
            ? try matrix("output.weight", rows: c.vocabSize, cols: d)
            : tokenEmbedding
        ropeFrequencyFactors = gguf.tensors["rope_freqs.weight"] == nil ? nil
            : try gguf.vector("rope_freqs.weight", count: c.headDim / 2)
        if let f = ropeFrequencyFactors, f.values.contains(where: { !($0 > 0) }) {
            throw EngineError.malformed(gguf.path, "rope_freqs.weight holds a factor that is not positive")
        }
    }
}
