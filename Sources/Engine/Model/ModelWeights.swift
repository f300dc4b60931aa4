/// The weights of one transformer block. Shapes are [rows][cols] = [out][in].
public struct LayerWeights {
    public let attnNorm: Vector      // [d_model]
    public let wq: Matrix            // [n_heads * head_dim][d_model]
    public let wk: Matrix            // [n_kv_heads * head_dim][d_model]
    public let wv: Matrix            // [n_kv_heads * head_dim][d_model]
    public let wo: Matrix            // [d_model][n_heads * head_dim]
    public let bq, bk, bv: Vector?   // qwen2 only: [q_dim], [kv_dim], [kv_dim]
    public let ffnNorm: Vector       // [d_model]
    public let wGate: Matrix         // [ffn][d_model]
    public let wUp: Matrix           // [ffn][d_model]
    public let wDown: Matrix         // [d_model][ffn]
}

/// All weights of a llama-like model, pointing into the GGUF memory map.
public struct ModelWeights {
    public let tokenEmbedding: Matrix   // [vocab][d_model]
    public let layers: [LayerWeights]
    public let outputNorm: Vector       // [d_model]
    /// [vocab][d_model]; the token embedding itself when the model ties them (SmolLM2).
    public let output: Matrix

    public init(gguf: GGUFFile, config c: ModelConfig) throws {
        let d = c.embeddingLength
        tokenEmbedding = try gguf.matrix("token_embd.weight", rows: c.vocabSize, cols: d)
        layers = try (0..<c.layerCount).map { i in
            let p = "blk.\(i)."
            return LayerWeights(
                attnNorm: try gguf.vector(p + "attn_norm.weight", count: d),
                wq: try gguf.matrix(p + "attn_q.weight", rows: c.qDim, cols: d),
                wk: try gguf.matrix(p + "attn_k.weight", rows: c.kvDim, cols: d),
                wv: try gguf.matrix(p + "attn_v.weight", rows: c.kvDim, cols: d),
                wo: try gguf.matrix(p + "attn_output.weight", rows: d, cols: c.qDim),
                bq: c.hasQKVBias ? try gguf.vector(p + "attn_q.bias", count: c.qDim) : nil,
                bk: c.hasQKVBias ? try gguf.vector(p + "attn_k.bias", count: c.kvDim) : nil,
                bv: c.hasQKVBias ? try gguf.vector(p + "attn_v.bias", count: c.kvDim) : nil,
                ffnNorm: try gguf.vector(p + "ffn_norm.weight", count: d),
                wGate: try gguf.matrix(p + "ffn_gate.weight", rows: c.feedForwardLength, cols: d),
                wUp: try gguf.matrix(p + "ffn_up.weight", rows: c.feedForwardLength, cols: d),
                wDown: try gguf.matrix(p + "ffn_down.weight", rows: d, cols: c.feedForwardLength))
        }
        outputNorm = try gguf.vector("output_norm.weight", count: d)
        output = gguf.tensors["output.weight"] != nil
            ? try gguf.matrix("output.weight", rows: c.vocabSize, cols: d)
            : tokenEmbedding
    }
}
