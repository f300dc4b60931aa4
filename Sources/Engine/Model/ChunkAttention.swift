import CKernels

/// Attention for a whole prefill chunk in one pool task (ck_attend_block): every query of the
/// chunk over the cache as it was before the chunk, plus the chunk's own keys, in one
/// softmax. The chunk's keys are stored only afterwards, so eviction during the chunk cannot
/// overwrite a key an earlier query of the chunk still needs — the reason prefill used to
/// attend token by token.
struct ChunkAttentionJob {
    let cache: KVCache                  // before this chunk is stored (with its memory, if any)
    let layer: Int
    let q: UnsafePointer<Float>         // [n][n_heads·head_dim], rotated at each query's position
    let qSink: UnsafePointer<Float>?    // [n][n_heads·head_dim] rotated at its sink position, or nil
    let k, v: UnsafePointer<Float>      // [n][n_kv_heads·head_dim], the chunk's keys (rotated) and values
    let positions: UnsafePointer<Int64> // [n] the chunk's stream positions
    let slotPositions: UnsafePointer<Int64> // [held] stream position of each cache slot held
    let held: Int                       // cache slots in use before the chunk
    let sinks: Int, window: Int         // the policy (window 0: dense), or a local layer's span and no sinks
    let local: Bool                     // a local layer: every held slot, masked by `window`; no memory
    let tokens: Int
    let headCount: Int, kvHeadCount: Int, headDim: Int
    let out: UnsafeMutablePointer<Float> // [n][n_heads·head_dim]
    let scratch: UnsafeMutablePointer<Float>
    let scratchStride: Int

    static func scratchFloats(batch: Int, config c: ModelConfig) -> Int {
        Int(ck_attend_block_scratch(Int32(batch), Int32(c.groupSize), Int32(c.headDim)))
    }

    static let run: ck_task_fn = { ctx, index, n in
        let job = ctx!.assumingMemoryBound(to: ChunkAttentionJob.self).pointee
        let scratch = job.scratch + Int(index) * job.scratchStride
        if job.tokens >= Int(n) {
            // A chunk: the threads split the queries.
            let t0 = job.tokens * Int(index) / Int(n), t1 = job.tokens * (Int(index) + 1) / Int(n)
            job.attend(queries: t0..<t1, heads: 0..<job.kvHeadCount, scratch: scratch)
        } else {
            // Decoding: the threads split the KV heads.
            for h in stride(from: Int(index), to: job.kvHeadCount, by: Int(n)) {
                job.attend(queries: 0..<job.tokens, heads: h..<h + 1, scratch: scratch)
            }
        }
    }

    /// Queries `queries` of the chunk, the groups of KV heads `heads`.
    private func attend(queries: Range<Int>, heads: Range<Int>, scratch: UnsafeMutablePointer<Float>) {
        let hd = headDim, group = headCount / kvHeadCount, qDim = headCount * hd, kvDim = kvHeadCount * hd
        for h in heads {
            // The chunk's own keys, as far as the last query of this slice (later ones are unseen).
            let own = ck_kv_segment(type: Int32(CK_KV_F32.rawValue), sink_query: 0, windowed: 1,
                                    keys: k + h * hd, values: v + h * hd, key_scales: nil, value_scales: nil,
                                    row_stride: Int64(kvDim), count: Int64(queries.upperBound), positions: positions)
            let first = queries.lowerBound * qDim + h * group * hd
            withUnsafeTemporaryAllocation(of: ck_kv_segment.self, capacity: KVCache.maxSegmentsPerHead) { segs in
                let count = local
                    ? cache.writeLocalSegments(layer: layer, head: h, held: held, slotPositions: slotPositions, own: own,
                                               into: segs.baseAddress!)
                    : cache.writeSegments(layer: layer, head: h, held: held, slotPositions: slotPositions,
                                          separateSinkQuery: qSink != nil, own: own, into: segs.baseAddress!)
                ck_attend_block(q + first, qSink.map { $0 + first }, Int64(qDim), Int32(queries.count), Int32(group),
                                Int32(hd), positions + queries.lowerBound, Int64(window), Int64(sinks),
                                segs.baseAddress, Int32(count), 1 / Float(hd).squareRoot(), scratch,
                                out + first, Int64(qDim))
            }
        }
    }

    func run(on pool: ComputePool) {
        BLAS.prepare()
        var job = self
        withUnsafeMutablePointer(to: &job) { ck_pool_run(pool.handle, ChunkAttentionJob.run, $0) }
    }
}
