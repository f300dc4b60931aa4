import CKernels

/// Scratch for batched prompt processing, allocated on first use and kept: [batch][…] rows.
final class PrefillBuffers {
    let batch: Int
    let x, xb, xb2, q, k, v, attnOut, hb, hb2: UnsafeMutablePointer<Float>
    let qSink: UnsafeMutablePointer<Float>     // [batch][q_dim] queries rotated for sink keys
    let chunkPositions: UnsafeMutablePointer<Int64> // [batch] the chunk's stream positions
    let weights: UnsafeMutablePointer<Float>   // one matrix dequantized to f32: [rows][cols], largest
    let xq: UnsafeMutablePointer<ck_block_q8>  // [batch][max cols / 32] the rows of x in int8 (int8 products)
    let attentionScratch: UnsafeMutablePointer<Float> // [threads][attentionScratchStride]
    let attentionScratchStride: Int

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
        qSink = .allocate(capacity: batch * c.qDim)
        chunkPositions = .allocate(capacity: batch)
        attentionScratchStride = ChunkAttentionJob.scratchFloats(batch: batch, config: c)
        attentionScratch = .allocate(capacity: threads * attentionScratchStride)
        hb = .allocate(capacity: batch * c.feedForwardLength)
        hb2 = .allocate(capacity: batch * c.feedForwardLength)
        weights = .allocate(capacity: max(c.qDim * d, c.feedForwardLength * d))
        xq = .allocate(capacity: batch * max(d, c.qDim, c.feedForwardLength) / 32)
    }

    deinit {
        for p in [x, xb, xb2, q, k, v, attnOut, qSink, hb, hb2, weights, attentionScratch] { p.deallocate() }
        chunkPositions.deallocate()
        xq.deallocate()
    }
}

/// One batched matrix product out[tokens][rows] = x[tokens][cols] · Wᵀ, as a pool task (a C
/// function pointer and its context): each thread takes a slice of W's rows — dequantizing
/// it into `scratch` first unless W is given in f32 — and runs one sgemm on it.
/// With `xq` (x's rows in int8) the threads run the int8 product instead (ck_matmul_q8).
struct MatmulJob {
    let matrix: Matrix?                 // quantized W, or nil when `scratch` already holds W in f32
    let rows: Int, cols: Int
    let x: UnsafePointer<Float>
    let out: UnsafeMutablePointer<Float>
    let tokens: Int
    let scratch: UnsafeMutablePointer<Float>
    var xq: UnsafePointer<ck_block_q8>? = nil

    static let run: ck_task_fn = { ctx, index, n in
        let job = ctx!.assumingMemoryBound(to: MatmulJob.self).pointee
        // Slices of whole 16-row groups keep each thread's output columns apart.
        let groups = (job.rows + 15) / 16
        let r0 = groups * Int(index) / Int(n) * 16, r1 = min(job.rows, groups * (Int(index) + 1) / Int(n) * 16)
        guard r0 < r1 else { return }
        if let xq = job.xq, let m = job.matrix {
            let w = m.weights(int8: true)
            ck_matmul_q8(w.type, w.data, xq, Int64(job.tokens), job.out, Int64(job.rows), Int64(job.cols), Int64(r0), Int64(r1))
            return
        }
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

/// The rows attention reads and writes for n tokens: q, qSink, out [n][q_dim]; k, v [n][kv_dim].
struct AttentionRows {
    let q, qSink, k, v, out: UnsafeMutablePointer<Float>
}

/// Where a chunk sits in the stream, for ChunkAttentionJob. nil when the chunk must attend
/// token by token: when it holds sink tokens and also reaches past the cache's capacity (a
/// window shorter than the chunk), new sink keys would need the separate sink rotation of
/// queries.
struct ChunkLayout {
    let pos0: Int, n: Int
    let held: Int                  // cache slots in use before the chunk
    let separateSinkQueries: Bool  // some query's sink rotation differs from its own

    init?(cache: KVCache, pos0: Int, n: Int) {
        let last = pos0 + n - 1
        if pos0 < cache.policy.sinks && last >= cache.capacity { return nil }
        self.pos0 = pos0
        self.n = n
        held = min(pos0, cache.capacity)
        separateSinkQueries = cache.sinkQueryPosition(last) != last
    }
}

extension Transformer {
    /// Tokens per prefill chunk: enough to amortize dequantizing each weight matrix once per
    /// chunk, small enough that the chunk's activations stay in cache.
    public static let prefillBatch = 256
    /// Tokens at the end of a prompt prefilled as their own chunk when a memory is attached.
    public static let recallTail = 32

    /// Runs a prompt through the model in chunks and returns the logits after its last token.
    /// Each chunk is one matrix product per weight matrix (OpenBLAS sgemm on the float path)
    /// instead of one matrix-vector product per token.
    @discardableResult
    public func prefill(_ tokens: [Int], cache: KVCache, progress: ((Int) -> Void)? = nil) -> UnsafeBufferPointer<Float> {
        precondition(!tokens.isEmpty)
        precondition(tokens.count <= cache.remaining, "KV cache is full")
        var start = 0
        while start < tokens.count {
            var end = min(tokens.count, start + Self.prefillBatch)
            // With a block memory, the prompt's last `recallTail` tokens — usually the question —
            // are a chunk of their own, so the blocks they recall are ranked by their queries
            // alone, not diluted by a chunk's worth of document before them.
            if cache.memory != nil, tokens.count - start > Self.recallTail, tokens.count - end < Self.recallTail {
                end = tokens.count - Self.recallTail
            }
            let chunk = Array(tokens[start..<end])
            if chunk.count == 1 {
                // A lone token: the matrix-vector path is faster than a 1-row sgemm.
                let logits = forward(token: chunk[0], cache: cache)
                if start + 1 == tokens.count { progress?(tokens.count); return logits }
            } else {
                prefillChunk(chunk, cache: cache)
            }
            start += chunk.count
            progress?(start)
        }
        return logitsAfterPrefill()
    }

    /// One chunk of up to `prefillBatch` tokens, laid out like `forward` but on [n][…] rows.
    private func prefillChunk(_ tokens: [Int], cache: KVCache) {
        let c = config, w = weights, b = prefillBuffers
        let n = tokens.count, d = c.embeddingLength
        let pos0 = cache.tokensSeen
        let chunkLayout = ChunkLayout(cache: cache, pos0: pos0, n: n)

        // 1. Token embeddings.
        for (t, token) in tokens.enumerated() {
            precondition(token >= 0 && token < c.vocabSize, "token id \(token) outside vocabulary")
            w.tokenEmbedding.dequantizeRow(token, into: b.x + t * d)
        }
        if c.isGemma { ck_scale(b.x, Float(d).squareRoot(), Int32(n * d)) }
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
            if let qn = layer.qNorm, let kn = layer.kNorm {
                for h in 0..<n * c.headCount { rmsnorm(b.q + h * c.headDim, b.q + h * c.headDim, qn, c.headDim) }
                for h in 0..<n * c.kvHeadCount { rmsnorm(b.k + h * c.headDim, b.k + h * c.headDim, kn, c.headDim) }
            }
            // 3–4. RoPE, attention, K/V into the cache.
            if let layout = chunkLayout {
                attendChunk(layer: l, cache: cache, layout: layout,
                            rows: AttentionRows(q: b.q, qSink: b.qSink, k: b.k, v: b.v, out: b.attnOut))
            } else {
                // Token by token, each stored before it attends (see chunkLayout).
                for t in 0..<n {
                    attend(layer: l, q: b.q + t * c.qDim, k: b.k + t * c.kvDim, v: b.v + t * c.kvDim,
                           position: pos0 + t, cache: cache, out: b.attnOut + t * c.qDim)
                }
            }
            // 5. Output projection and residual.
            matmul(layer.wo, b.attnOut, b.xb2, n)
            if let post = layer.postAttnNorm { rmsnormRows(b.xb2, b.xb2, post, n) }
            ck_add(b.x, b.xb2, Int32(n * d))
            // 6. FFN sublayer.
            rmsnormRows(b.xb, b.x, layer.ffnNorm, n)
            matmul(layer.wGate, b.xb, b.hb, n)
            matmul(layer.wUp, b.xb, b.hb2, n)
            if c.isGemma { ck_geglu(b.hb, b.hb2, Int32(n * c.feedForwardLength)) } else { ck_swiglu(b.hb, b.hb2, Int32(n * c.feedForwardLength)) }
            matmul(layer.wDown, b.hb, b.xb2, n)
            if let post = layer.postFfnNorm { rmsnormRows(b.xb2, b.xb2, post, n) }
            ck_add(b.x, b.xb2, Int32(n * d))
        }
        cache.commit(n)
        lastPrefillRow = b.x + (n - 1) * d
    }

    /// RoPE for the whole chunk, attention of all its queries at once (ChunkAttentionJob,
    /// with the block memory's recalled blocks), then its keys and values into the cache in
    /// order, evicting as they go. Decoding comes here too (n = 1) once the memory holds
    /// something.
    func attendChunk(layer l: Int, cache: KVCache, layout: ChunkLayout, rows: AttentionRows) {
        let c = config, n = layout.n, pos0 = layout.pos0, b = prefillBuffers
        let span = c.window(ofLayer: l)
        if let span {
            // A local layer: its own last `span` positions, no sinks, no memory.
            for t in 0..<n {
                rotate(q: rows.q + t * c.qDim, qSink: nil, k: rows.k + t * c.kvDim, position: pos0 + t, cache: cache, table: localRope!)
                b.chunkPositions[t] = Int64(pos0 + t)
            }
            ChunkAttentionJob(cache: cache, layer: l, q: rows.q, qSink: nil, k: rows.k, v: rows.v, positions: b.chunkPositions,
                              slotPositions: cache.slotPositions, held: layout.held, sinks: 0, window: span, local: true,
                              tokens: n, headCount: c.headCount, kvHeadCount: c.kvHeadCount, headDim: c.headDim,
                              out: rows.out, scratch: b.attentionScratch, scratchStride: b.attentionScratchStride)
                .run(on: pool)
            for t in 0..<n { cache.store(layer: l, position: pos0 + t, key: rows.k + t * c.kvDim, value: rows.v + t * c.kvDim) }
            return
        }
        for t in 0..<n {
            rotate(q: rows.q + t * c.qDim, qSink: layout.separateSinkQueries ? rows.qSink + t * c.qDim : nil,
                   k: rows.k + t * c.kvDim, position: pos0 + t, cache: cache, table: rope)
            b.chunkPositions[t] = Int64(pos0 + t)
        }
        // Also while the memory is still empty: the window keys this chunk evicts must stay
        // visible to its later queries (the first chunk past the window lost them).
        let memory = cache.memory
        let m = cache.memoryLayers[l]!
        memory?.noteQueries(layer: m, queries: rows.q, n: n, first: pos0, headCount: c.headCount)
        memory?.rank(layer: m, queries: layout.separateSinkQueries ? rows.qSink : rows.q, n: n,
                     headCount: c.headCount, full: n > 1, hidden: cache.hidden)
        ChunkAttentionJob(cache: cache, layer: l,
                          q: rows.q, qSink: layout.separateSinkQueries ? rows.qSink : nil,
                          k: rows.k, v: rows.v, positions: b.chunkPositions, slotPositions: cache.slotPositions,
                          held: layout.held, sinks: cache.policy.sinks, window: cache.policy.window ?? 0, local: false,
                          tokens: n, headCount: c.headCount, kvHeadCount: c.kvHeadCount, headDim: c.headDim,
                          out: rows.out, scratch: b.attentionScratch, scratchStride: b.attentionScratchStride)
            .run(on: pool)
        for t in 0..<n {
            cache.store(layer: l, position: pos0 + t, key: rows.k + t * c.kvDim, value: rows.v + t * c.kvDim)
        }
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
        rmsnorm(last, last, weights.outputNorm, d)
        weights.output.matvec(last, logitsBuffer, pool: pool, scratch: nil)
        return UnsafeBufferPointer(start: logitsBuffer, count: config.vocabSize)
    }

    private func rmsnormRows(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ weight: Vector, _ n: Int) {
        let d = config.embeddingLength
        for t in 0..<n { rmsnorm(out + t * d, x + t * d, weight, d) }
    }

    /// out[n][rows] = x[n][cols] · Wᵀ. Each pool thread takes a slice of W's rows,
    /// dequantizes it to f32 and runs one sgemm on it: no barrier between the two steps.
    private func matmul(_ m: Matrix, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ n: Int) {
        var job = MatmulJob(matrix: m, rows: m.rows, cols: m.cols, x: x, out: out, tokens: n, scratch: prefillBuffers.weights)
        if usesInt8Matmul(m) {
            let xq = prefillBuffers.xq, blocks = m.cols / 32
            for t in 0..<n { ck_quantize_q8(x + t * m.cols, xq + t * blocks, Int64(m.cols)) }
            job.xq = UnsafePointer(xq)
        }
        job.run(on: pool)
    }

    /// Whether prefill multiplies `m` in int8 (as decoding does) rather than through sgemm.
    func usesInt8Matmul(_ m: Matrix) -> Bool {
        // The repacked layouts (Q4_1 and Q8_0 repacked, the int8 copies of the other block types)
        // have micro-kernels; the other types would run the decode kernel once per token, which
        // measured no faster than sgemm.
        let type = m.weights(int8: true).type
        return fastPath && int8Prefill && ck_has_avx512vnni() != 0
            && [CK_TYPE_Q4_1X, CK_TYPE_Q5_1X, CK_TYPE_Q6_0X, CK_TYPE_Q8_0X].contains { Int32($0.rawValue) == type }
    }
}
