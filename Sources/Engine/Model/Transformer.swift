import CKernels

/// A llama-like decoder (llama, qwen2) running one token at a time on the CPU, the way
/// llama2.c's run.c does: embedding → per layer (RMSNorm, Q/K/V, RoPE, grouped-query
/// attention over the KV cache, output projection, residual, RMSNorm, SwiGLU FFN, residual)
/// → final RMSNorm → logits. The heavy math is in CKernels.
public final class Transformer {
    public let config: ModelConfig
    public let weights: ModelWeights
    public let gguf: GGUFFile            // owns the memory map the weights point into
    public let rope: RopeTable
    /// RoPE of the local layers (Gemma 3: base 10000 where the global layers turn with 10^6);
    /// nil when every layer is global.
    public let localRope: RopeTable?
    public let pool: ComputePool
    /// false: every product on the float path (weights dequantized on the fly, activations
    /// kept in f32) — the reference the fast int8 path is held to.
    public var fastPath = true
    /// On the fast path, prefill's Q4_1 products run in int8 (ck_matmul_q8) where the CPU has
    /// AVX-512 VNNI: pp512 ~770 against ~620 t/s through sgemm (docs/design.md). Other types,
    /// other CPUs and `fastPath` off: sgemm on dequantized weights (exact float).
    public var int8Prefill = true
    // Scratch buffers, allocated once: the per-token path allocates nothing.
    private let x: UnsafeMutablePointer<Float>       // [d_model] residual stream
    private let xb: UnsafeMutablePointer<Float>      // [d_model] normed input of a sublayer
    private let xb2: UnsafeMutablePointer<Float>     // [d_model] sublayer output
    private let q: UnsafeMutablePointer<Float>       // [n_heads * head_dim]
    private let k: UnsafeMutablePointer<Float>       // [n_kv_heads * head_dim]
    private let v: UnsafeMutablePointer<Float>       // [n_kv_heads * head_dim]
    private let attnOut: UnsafeMutablePointer<Float> // [n_heads * head_dim]
    let qSink: UnsafeMutablePointer<Float>           // [n_heads * head_dim] query rotated for sink keys
    let ropeRows: UnsafeMutablePointer<Float>        // [4][head_dim/2]: cos, sin at the position; cos, sin at the sink position
    private(set) var scores: UnsafeMutablePointer<Float>  // [threads][scoresStride] attention weights and partials
    private(set) var scoresStride: Int               // ck_pool_attend_segments_scratch of the most keys a head attends
    private let hb: UnsafeMutablePointer<Float>      // [ffn] gate, then silu(gate)·up
    private let hb2: UnsafeMutablePointer<Float>     // [ffn] up
    let logitsBuffer: UnsafeMutablePointer<Float>    // [vocab]
    private let xq: UnsafeMutablePointer<ck_block_q8> // [max(d_model, ffn, q_dim) / 32] int8 activations
    private let segments: UnsafeMutablePointer<ck_kv_segment>  // [n_kv_heads][KVCache.maxSegmentsPerHead] runs of keys a token attends to
    private let segmentOffsets: UnsafeMutablePointer<Int32>     // [n_kv_heads + 1] where each KV head's runs begin
    public let maxPositions: Int
    var lastPrefillRow: UnsafeMutablePointer<Float>?
    var digestMemo: String?           // SessionFingerprint: the tensor table digest
    lazy var prefillBuffers = PrefillBuffers(config: config, batch: Transformer.prefillBatch,
                                             threads: pool.threads, positions: maxPositions)

    /// Loads the model at `path`. `ropeScaling` defaults to what the GGUF states (usually
    /// none); `maxPositions` bounds the cache capacity RoPE is tabulated for (default: the
    /// trained context, or the scaled one).
    public convenience init(path: String, threads: Int = 1, maxPositions: Int? = nil, ropeScaling: RopeScaling? = nil) throws {
        let gguf = try GGUFFile(path: path)
        try self.init(gguf: gguf, threads: threads, maxPositions: maxPositions, ropeScaling: ropeScaling)
    }

    public init(gguf: GGUFFile, threads: Int = 1, maxPositions: Int? = nil, ropeScaling: RopeScaling? = nil) throws {
        let c = try ModelConfig(gguf: gguf)
        self.gguf = gguf
        self.config = c
        self.weights = try ModelWeights(gguf: gguf, config: c)
        self.pool = ComputePool(threads: threads)
        let scaling = ropeScaling ?? RopeScaling(config: c)
        let positions = maxPositions ?? max(c.contextLength, scaling.scaledContext)
        self.maxPositions = positions
        self.rope = RopeTable(headDim: c.headDim, positions: positions, base: c.ropeBase, scaling: scaling,
                              frequencyFactors: weights.ropeFrequencyFactors?.values)
        // Local layers see only their own window, well inside the trained context: never scaled.
        localRope = c.localWindow.map { RopeTable(headDim: c.headDim, positions: min(positions, max($0, 1) * 2), base: c.localRopeBase) }
        x = .allocate(capacity: c.embeddingLength)
        xb = .allocate(capacity: c.embeddingLength)
        xb2 = .allocate(capacity: c.embeddingLength)
        q = .allocate(capacity: c.qDim)
        k = .allocate(capacity: c.kvDim)
        v = .allocate(capacity: c.kvDim)
        attnOut = .allocate(capacity: c.qDim)
        qSink = .allocate(capacity: c.qDim)
        ropeRows = .allocate(capacity: 2 * c.headDim)
        scoresStride = Int(ck_pool_attend_segments_scratch(Int32(c.headCount), Int32(c.kvHeadCount), Int32(c.headDim), Int64(positions)))
        scores = .allocate(capacity: pool.threads * scoresStride)
        hb = .allocate(capacity: c.feedForwardLength)
        hb2 = .allocate(capacity: c.feedForwardLength)
        logitsBuffer = .allocate(capacity: c.vocabSize)
        xq = .allocate(capacity: max(c.embeddingLength, c.feedForwardLength, c.qDim) / 32 + 1)
        segments = .allocate(capacity: c.kvHeadCount * KVCache.maxSegmentsPerHead)
        segmentOffsets = .allocate(capacity: c.kvHeadCount + 1)
    }

    /// Grows the decoding scratch to hold `keys` keys per KV head. It is sized for the RoPE
    /// positions at first, but a window's recalled blocks and the block being filled come on
    /// top (a model whose context is the window's length overran it), and the size it had
    /// fell short of a dense cache at its full length on one thread (`--threads 1`, where one
    /// thread takes every key) by group · (head_dim + 2) floats. Sized for one thread taking
    /// every key, it holds any split.
    private func reserveScores(keys: Int) {
        let c = config
        let needed = Int(ck_pool_attend_segments_scratch(Int32(c.headCount), Int32(c.kvHeadCount), Int32(c.headDim), Int64(keys)))
        guard needed > scoresStride else { return }
        scores.deallocate()
        scoresStride = needed
        scores = .allocate(capacity: pool.threads * needed)
    }

    deinit {
        for p in [x, xb, xb2, q, k, v, attnOut, qSink, ropeRows, scores, hb, hb2, logitsBuffer] { p.deallocate() }
        xq.deallocate()
        segments.deallocate()
        segmentOffsets.deallocate()
    }

    /// A dense cache for this model, holding up to `capacity` tokens (default: all positions).
    public func makeCache(capacity: Int? = nil) -> KVCache {
        makeCache(policy: .dense(min(capacity ?? maxPositions, maxPositions)))
    }

    /// A cache with the given sinks + window policy and storage precision, and a block
    /// memory for what leaves the window when `memory` is given (windowed caches only).
    public func makeCache(policy: CachePolicy, precision: KVPrecision = .f32, memory: MemorySettings? = nil) -> KVCache {
        precondition(policy.capacity <= maxPositions, "cache of \(policy.capacity) exceeds the \(maxPositions) positions RoPE is set up for")
        precondition(policy.window.map { $0 >= config.localWindow ?? 0 } ?? true,
                     "a window of \(policy.window ?? 0) is shorter than the model's local layers' \(config.localWindow ?? 0)")
        let cache = KVCache(layerCount: config.layerCount, kvHeadCount: config.kvHeadCount, headDim: config.headDim,
                            policy: policy, precision: precision)
        if let memory, let window = policy.window {
            // Only the global layers keep a memory.
            let global = (0..<config.layerCount).filter { config.window(ofLayer: $0) == nil }
            cache.memoryLayers = (0..<config.layerCount).map { global.firstIndex(of: $0) }
            cache.memory = BlockMemory(layerCount: global.count, kvHeadCount: config.kvHeadCount, headDim: config.headDim,
                                       rope: rope, ropeMode: config.ropeMode.rawValue, settings: memory,
                                       sinks: policy.sinks, window: window)
        }
        return cache
    }

    /// An empty cache with the same policy, precision and memory settings as `other`.
    public func makeCache(like other: KVCache) -> KVCache {
        makeCache(policy: other.policy, precision: other.precision, memory: other.memory?.settings)
    }

    /// Step 3–4 of the forward pass for one token at absolute position p, in one layer: RoPE
    /// on q (twice: for window keys at p, for sink keys at the cache position) and k, the
    /// memory's re-ranking when due, then attention of every head over what `writeSegments`
    /// lists in one softmax (ck_pool_attend_segments). With a memory the token attends first
    /// and its k/v go into the cache afterwards, evicting into the memory — the order a
    /// prefill chunk keeps; without one it is stored first, and attends to the cache alone.
    func attend(layer l: Int, q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                position p: Int, cache: KVCache, out: UnsafeMutablePointer<Float>) {
        let c = config, hd = c.headDim
        if let span = c.window(ofLayer: l) {
            // A local layer: stored first, then its last `span` positions, no sinks, no memory.
            rotate(q: q, qSink: nil, k: k, position: p, cache: cache, table: localRope!)
            cache.store(layer: l, position: p, key: k, value: v)
            var n = 0
            segmentOffsets[0] = 0
            for h in 0..<c.kvHeadCount {
                n += cache.writeLocalSegments(layer: l, head: h, through: p, span: span, into: segments + n)
                segmentOffsets[h + 1] = Int32(n)
            }
            reserveScores(keys: min(span, p + 1))
            ck_pool_attend_segments(pool.handle, q, q, segments, segmentOffsets, Int32(c.headCount), Int32(c.kvHeadCount),
                                    Int32(hd), 1 / Float(hd).squareRoot(), scores, Int64(scoresStride), out)
            return
        }
        let separateSinkQuery = cache.sinkQueryPosition(p) != p
        rotate(q: q, qSink: separateSinkQuery ? qSink : nil, k: k, position: p, cache: cache, table: rope)
        let memory = cache.memory
        if let memory, let m = cache.memoryLayers[l] {
            memory.noteQueries(layer: m, queries: q, n: 1, first: p, headCount: c.headCount)
            if !memory.isEmpty(layer: m) {
                memory.rank(layer: m, queries: separateSinkQuery ? qSink : q, n: 1, headCount: c.headCount, full: false,
                            hidden: cache.hidden)
            }
        } else {
            cache.store(layer: l, position: p, key: k, value: v)
        }
        // Into the preallocated segment table (this runs per layer per token: no arrays).
        let held = min(memory == nil ? p + 1 : p, cache.capacity)
        var n = 0
        segmentOffsets[0] = 0
        for h in 0..<c.kvHeadCount {
            let own = ck_kv_segment(type: Int32(CK_KV_F32.rawValue), sink_query: 0, windowed: 0,
                                    keys: k + h * hd, values: v + h * hd, key_scales: nil, value_scales: nil,
                                    row_stride: Int64(hd), count: memory == nil ? 0 : 1, positions: nil)
            n += cache.writeSegments(layer: l, head: h, held: held, slotPositions: nil, separateSinkQuery: separateSinkQuery,
                                     own: own, into: segments + n)
            segmentOffsets[h + 1] = Int32(n)
        }
        var keys = 0
        for h in 0..<c.kvHeadCount {
            var run = 0
            for i in Int(segmentOffsets[h])..<Int(segmentOffsets[h + 1]) { run += Int(segments[i].count) }
            keys = max(keys, run)
        }
        reserveScores(keys: keys)
        ck_pool_attend_segments(pool.handle, separateSinkQuery ? qSink : q, q, segments, segmentOffsets,
                                Int32(c.headCount), Int32(c.kvHeadCount), Int32(hd), 1 / Float(hd).squareRoot(),
                                scores, Int64(scoresStride), out)
        if memory != nil { cache.store(layer: l, position: p, key: k, value: v) }
    }

    /// RoPE for one token at position p: its query heads and KV heads at p and, when
    /// `qSink` is given, a copy of the query rotated at the cache position the sink keys see.
    func rotate(q: UnsafeMutablePointer<Float>, qSink: UnsafeMutablePointer<Float>?, k: UnsafeMutablePointer<Float>,
                position p: Int, cache: KVCache, table rope: RopeTable) {
        let c = config, hd = c.headDim, half = hd / 2, mode = c.ropeMode.rawValue
        let cosP = ropeRows, sinP = ropeRows + half, cosS = ropeRows + 2 * half, sinS = ropeRows + 3 * half
        if let qSink {
            qSink.update(from: q, count: c.qDim)
            rope.fill(cache.sinkQueryPosition(p), cos: cosS, sin: sinS)
            for h in 0..<c.headCount { ck_rope(qSink + h * hd, Int32(hd), cosS, sinS, mode) }
        }
        rope.fill(p, cos: cosP, sin: sinP)
        for h in 0..<c.headCount { ck_rope(q + h * hd, Int32(hd), cosP, sinP, mode) }
        for h in 0..<c.kvHeadCount { ck_rope(k + h * hd, Int32(hd), cosP, sinP, mode) }
    }

    /// Runs one token at the cache's next position, stores its keys/values (evicting per the
    /// cache policy) and returns the logits for the next token ([vocab], valid until the next
    /// call).
    @discardableResult
    public func forward(token: Int, cache: KVCache) -> UnsafeBufferPointer<Float> {
        let c = config, w = weights
        let d = c.embeddingLength
        let pool = self.pool, scratch = fastPath ? xq : nil
        let pos = cache.tokensSeen
        precondition(token >= 0 && token < c.vocabSize, "token id \(token) outside vocabulary")
        precondition(cache.canAppend, "KV cache is full")

        // 1. Token embedding (Gemma scales it by √d_model).
        w.tokenEmbedding.dequantizeRow(token, into: x)
        if c.isGemma { ck_scale(x, Float(d).squareRoot(), Int32(d)) }

        for (l, layer) in w.layers.enumerated() {
            // 2. Attention sublayer: pre-norm, then Q/K/V projections (+ biases for qwen2;
            //    each head's q and k RMS-normed for Gemma and Qwen 3).
            rmsnorm(xb, x, layer.attnNorm, d)
            Matrix.matvec((layer.wq, q), (layer.wk, k), (layer.wv, v), input: xb, pool: pool, scratch: scratch)
            if let bq = layer.bq, let bk = layer.bk, let bv = layer.bv {
                bq.values.withUnsafeBufferPointer { ck_add(q, $0.baseAddress, Int32(c.qDim)) }
                bk.values.withUnsafeBufferPointer { ck_add(k, $0.baseAddress, Int32(c.kvDim)) }
                bv.values.withUnsafeBufferPointer { ck_add(v, $0.baseAddress, Int32(c.kvDim)) }
            }
            if let qn = layer.qNorm, let kn = layer.kNorm {
                for h in 0..<c.headCount { rmsnorm(q + h * c.headDim, q + h * c.headDim, qn, c.headDim) }
                for h in 0..<c.kvHeadCount { rmsnorm(k + h * c.headDim, k + h * c.headDim, kn, c.headDim) }
            }

            // 3–4. RoPE, K/V into the cache, attention (query head h reads KV head h / group).
            attend(layer: l, q: q, k: k, v: v, position: pos, cache: cache, out: attnOut)

            // 5. Output projection (Gemma: normed) and residual.
            layer.wo.matvec(attnOut, xb2, pool: pool, scratch: scratch)
            if let post = layer.postAttnNorm { rmsnorm(xb2, xb2, post, d) }
            ck_add(x, xb2, Int32(d))

            // 6. FFN sublayer: pre-norm, gated FFN (down(act(gate·x) * up·x), act SiLU, or GELU
            //    for Gemma), (Gemma: normed), residual.
            rmsnorm(xb, x, layer.ffnNorm, d)
            Matrix.matvec((layer.wGate, hb), (layer.wUp, hb2), input: xb, pool: pool, scratch: scratch)
            if c.isGemma { ck_geglu(hb, hb2, Int32(c.feedForwardLength)) } else { ck_swiglu(hb, hb2, Int32(c.feedForwardLength)) }
            layer.wDown.matvec(hb, xb2, pool: pool, scratch: scratch)
            if let post = layer.postFfnNorm { rmsnorm(xb2, xb2, post, d) }
            ck_add(x, xb2, Int32(d))
        }
        cache.commit()

        // 7. Final norm and output head.
        rmsnorm(x, x, w.outputNorm, d)
        w.output.matvec(x, logitsBuffer, pool: pool, scratch: scratch)
        return UnsafeBufferPointer(start: logitsBuffer, count: c.vocabSize)
    }

    /// out[n] = RMSNorm(x[n]) · weight (out may be x).
    func rmsnorm(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ weight: Vector, _ n: Int) {
        weight.values.withUnsafeBufferPointer { ck_rmsnorm(out, x, $0.baseAddress, Int32(n), config.rmsEpsilon) }
    }
}
