import CKernels

/// Scratch for batched prompt processing, allocated on first use and kept: [batch][…] rows.
final class PrefillBuffers {
    let batch: Int
    let x, xb, xb2, q, k, v, attnOut, hb, hb2: UnsafeMutablePointer<Float>
    let weights: UnsafeMutablePointer<Float>   // one matrix dequantized to f32: [rows][cols], largest

    init(config c: ModelConfig, batch: Int, threads: Int, positions: Int) {
        self.batch = batch
        let d = c.embeddingLength
        x = .allocate(capacity: batch * d)
        xb = .allocate(capacity: batch * d)
        xb2 = .allocate(capacity: batch * d)
        q = .allocate(capacity: batch * c.qDim)
        k = .allocate(capacity: batch * c.kvDim)
        v = .allocate(capacity: batch * c.kvDim)
        attnOut = .allocate(capacity: batch * c.qDim)
        hb = .allocate(capacity: batch * c.feedForwardLength)
        hb2 = .allocate(capacity: batch * c.feedForwardLength)
        weights = .allocate(capacity: max(c.qDim * d, c.feedForwardLength * d))
    }

    deinit {
        for p in [x, xb, xb2, q, k, v, attnOut, hb, hb2, weights] { p.deallocate() }
    }
}

/// One batched matrix product out[tokens][rows] = x[tokens][cols] · Wᵀ, as a pool task (a C
/// function pointer and its context): each thread takes a slice of W's rows — dequantizing
/// it into `scratch` first unless W is given in f32 — and runs one sgemm on it.
struct MatmulJob {
    let matrix: Matrix?                 // quantized W, or nil when `scratch` already holds W in f32
    let rows: Int, cols: Int
    let x: UnsafePointer<Float>
    let out: UnsafeMutablePointer<Float>
    let tokens: Int
    let scratch: UnsafeMutablePointer<Float>

    static let run: ck_task_fn = { ctx, index, n in
        let job = ctx!.assumingMemoryBound(to: MatmulJob.self).pointee
        // Slices of whole 16-row groups keep each thread's output columns apart.
        let groups = (job.rows + 15) / 16
        let r0 = groups * Int(index) / Int(n) * 16, r1 = min(job.rows, groups * (Int(index) + 1) / Int(n) * 16)
        guard r0 < r1 else { return }
        if let m = job.matrix {
            for r in r0..<r1 { m.dequantizeRow(r, into: job.scratch + r * job.cols) }
        }
        BLAS.gemmTransB(m: job.tokens, n: r1 - r0, k: job.cols, a: job.x, b: job.scratch + r0 * job.cols,
                        c: job.out + r0, ldc: job.rows)
    }

    func run(on pool: ComputePool) {
        var job = self
        withUnsafeMutablePointer(to: &job) { ck_pool_run(pool.handle, MatmulJob.run, $0) }
    }
}

extension Transformer {
    /// Tokens per prefill chunk: enough to amortize dequantizing each weight matrix once per
    /// chunk, small enough that the chunk's activations stay in cache.
    public static let prefillBatch = 256

    /// Runs a prompt through the model in chunks and returns the logits after its last token.
    /// Each chunk is one matrix product per weight matrix (OpenBLAS sgemm on the float path)
    /// instead of one matrix-vector product per token.
    @discardableResult
    public func prefill(_ tokens: [Int], cache: KVCache) -> UnsafeBufferPointer<Float> {
        precondition(!tokens.isEmpty)
        precondition(tokens.count <= cache.remaining, "KV cache is full")
        var start = 0
        while start < tokens.count {
            let chunk = Array(tokens[start..<min(tokens.count, start + Self.prefillBatch)])
            if chunk.count == 1 {
                // A lone token: the matrix-vector path is faster than a 1-row sgemm.
                if start + 1 == tokens.count { return forward(token: chunk[0], cache: cache) }
                forward(token: chunk[0], cache: cache)
            } else {
                prefillChunk(chunk, cache: cache)
            }
            start += chunk.count
        }
        return logitsAfterPrefill()
    }

    /// One chunk of up to `prefillBatch` tokens, laid out like `forward` but on [n][…] rows.
    private func prefillChunk(_ tokens: [Int], cache: KVCache) {
        let c = config, w = weights, b = prefillBuffers
        let n = tokens.count, d = c.embeddingLength
        let pos0 = cache.tokensSeen

        // 1. Token embeddings.
        for (t, token) in tokens.enumerated() {
            precondition(token >= 0 && token < c.vocabSize, "token id \(token) outside vocabulary")
            w.tokenEmbedding.dequantizeRow(token, into: b.x + t * d)
        }
        for (l, layer) in w.layers.enumerated() {
            // 2. Attention sublayer: norm each row, then Q/K/V for all rows at once.
            rmsnormRows(b.xb, b.x, layer.attnNorm, n)
            matmul(layer.wq, b.xb, b.q, n)
            matmul(layer.wk, b.xb, b.k, n)
            matmul(layer.wv, b.xb, b.v, n)
            if let bq = layer.bq, let bk = layer.bk, let bv = layer.bv {
                for t in 0..<n {
                    bq.values.withUnsafeBufferPointer { ck_add(b.q + t * c.qDim, $0.baseAddress, Int32(c.qDim)) }
                    bk.values.withUnsafeBufferPointer { ck_add(b.k + t * c.kvDim, $0.baseAddress, Int32(c.kvDim)) }
                    bv.values.withUnsafeBufferPointer { ck_add(b.v + t * c.kvDim, $0.baseAddress, Int32(c.kvDim)) }
                }
            }
            // 3–4. Token by token, in order: RoPE, K/V into the cache, attention. In order,
            // because once the window is full a token's keys overwrite the slot of one that
            // an earlier token of the same chunk still attends to.
            for t in 0..<n {
                attend(layer: l, q: b.q + t * c.qDim, k: b.k + t * c.kvDim, v: b.v + t * c.kvDim,
                       position: pos0 + t, cache: cache, out: b.attnOut + t * c.qDim)
            }
            // 5. Output projection and residual.
            matmul(layer.wo, b.attnOut, b.xb2, n)
            ck_add(b.x, b.xb2, Int32(n * d))
            // 6. FFN sublayer.
            rmsnormRows(b.xb, b.x, layer.ffnNorm, n)
            matmul(layer.wGate, b.xb, b.hb, n)
            matmul(layer.wUp, b.xb, b.hb2, n)
            ck_swiglu(b.hb, b.hb2, Int32(n * c.feedForwardLength))
            matmul(layer.wDown, b.hb, b.xb2, n)
            ck_add(b.x, b.xb2, Int32(n * d))
        }
        cache.commit(n)
        lastPrefillRow = b.x + (n - 1) * d
    }

    /// Runs a chunk of at most `prefillBatch` tokens and returns every token's final hidden
    /// state after the output norm ([n][d_model], valid until the next call): what the output
    /// head turns into logits, for callers that need all positions (perplexity).
    public func prefillHidden(_ tokens: [Int], cache: KVCache) -> UnsafePointer<Float> {
        precondition(!tokens.isEmpty && tokens.count <= Self.prefillBatch)
        precondition(tokens.count <= cache.remaining, "KV cache is full")
        prefillChunk(tokens, cache: cache)
        let b = prefillBuffers
        rmsnormRows(b.xb, b.x, weights.outputNorm, tokens.count)
        return UnsafePointer(b.xb)
    }

    /// Final norm and output head for the last prefilled token only.
    private func logitsAfterPrefill() -> UnsafeBufferPointer<Float> {
        let d = config.embeddingLength
        let last = lastPrefillRow!
        weights.outputNorm.values.withUnsafeBufferPointer { ck_rmsnorm(last, last, $0.baseAddress, Int32(d), config.rmsEpsilon) }
        weights.output.matvec(last, logitsBuffer, pool: pool, scratch: nil)
        return UnsafeBufferPointer(start: logitsBuffer, count: config.vocabSize)
    }

    private func rmsnormRows(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ weight: Vector, _ n: Int) {
        let d = config.embeddingLength, eps = config.rmsEpsilon
        weight.values.withUnsafeBufferPointer { wp in
            for t in 0..<n { ck_rmsnorm(out + t * d, x + t * d, wp.baseAddress, Int32(d), eps) }
        }
    }

    /// out[n][rows] = x[n][cols] · Wᵀ. Each pool thread takes a slice of W's rows,
    /// dequantizes it to f32 and runs one sgemm on it: no barrier between the two steps.
    private func matmul(_ m: Matrix, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
        MatmulJob(matrix: m, rows: m.rows, cols: m.cols, x: x, out: out, tokens: n, scratch: prefillBuffers.weights)
            .run(on: pool)
    }
}
