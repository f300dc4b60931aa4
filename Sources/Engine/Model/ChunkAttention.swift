import CKernels

/// Attention for a whole prefill chunk in one pool task (ck_attend_block): every query of the
/// chunk over the cache as it was before the chunk, plus the chunk's own keys, in one
/// softmax. The chunk's keys are stored only afterwards, so eviction during the chunk cannot
/// overwrite a key an earlier query of the chunk still needs — the reason prefill used to
/// attend token by token.
struct ChunkAttentionJob {
    let cache: ck_kv_view               // the layer, before this chunk is stored
    let layer: Int
    let memory: BlockMemory?            // recalled blocks to attend to as well
    let q: UnsafePointer<Float>         // [n][n_heads·head_dim], rotated at each query's position
    let qSink: UnsafePointer<Float>?    // [n][n_heads·head_dim] rotated at its sink position, or nil
    let k, v: UnsafePointer<Float>      // [n][n_kv_heads·head_dim], the chunk's keys (rotated) and values
    let positions: UnsafePointer<Int64> // [n] the chunk's stream positions
    let slotPositions: UnsafePointer<Int64> // [held] stream position of each cache slot held
    let held: Int                       // cache slots in use before the chunk
    let sinks: Int, window: Int         // the policy (window 0: dense)
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
            // Decoding: the threads split the query heads, in contiguous runs so that a
            // thread reads a KV head's keys once per run. Splitting whole KV heads left one
            // of 2 threads idle a third of the time with the default model's 3 KV heads
            // (decoding with memory on ran at 0.73× of memory off after 128K tokens).
            let group = job.headCount / job.kvHeadCount
            let u0 = job.headCount * Int(index) / Int(n), u1 = job.headCount * (Int(index) + 1) / Int(n)
            var u = u0
            while u < u1 {
                let h = u / group, g0 = u % group, g1 = min(group, g0 + u1 - u)
                job.attend(queries: 0..<job.tokens, heads: h..<h + 1, members: g0..<g1, scratch: scratch)
                u += g1 - g0
            }
        }
    }

    /// Queries `queries` of the chunk, the groups of KV heads `heads` (of each group, the
    /// query heads `members`, all by default).
    private func attend(queries: Range<Int>, heads: Range<Int>, members: Range<Int>? = nil, scratch: UnsafeMutablePointer<Float>) {
        let hd = headDim, group = headCount / kvHeadCount, qDim = headCount * hd, kvDim = kvHeadCount * hd
        let members = members ?? 0..<group
        let heldSinks = min(sinks, held), isF32 = cache.type == Int32(CK_KV_F32.rawValue)
        let groups = hd / Int(CK_KV_GROUP), rowBytes = isF32 ? hd * 4 : hd
        for h in heads {
            // Slot `first` of head h in the cache, as a segment of `count` rows.
            func cached(_ first: Int, _ count: Int, sinkQuery: Bool, windowed: Bool) -> ck_kv_segment {
                let row = h * Int(cache.capacity) + first
                return ck_kv_segment(type: cache.type, sink_query: sinkQuery ? 1 : 0, windowed: windowed ? 1 : 0,
                                     keys: cache.keys + row * rowBytes, values: cache.values + row * rowBytes,
                                     key_scales: isF32 ? nil : cache.key_scales + row * groups,
                                     value_scales: isF32 ? nil : cache.value_scales + row * groups,
                                     row_stride: Int64(hd), count: Int64(count), positions: slotPositions + first)
            }
            // With a memory, keys evicted during this chunk stay visible to the rest of it (at
            // their true distance, at most window + chunk): the memory only takes them after.
            let segments = (memory?.segments(layer: layer, head: h) ?? []) + [
                cached(0, heldSinks, sinkQuery: true, windowed: false),
                cached(heldSinks, held - heldSinks, sinkQuery: false, windowed: memory == nil),
                // The chunk's own keys, as far as the last query of this slice (later ones are unseen).
                ck_kv_segment(type: Int32(CK_KV_F32.rawValue), sink_query: 0, windowed: 1,
                              keys: k + h * hd, values: v + h * hd, key_scales: nil, value_scales: nil,
                              row_stride: Int64(kvDim), count: Int64(queries.upperBound), positions: positions),
            ].filter { $0.count > 0 }
            let first = queries.lowerBound * qDim + (h * group + members.lowerBound) * hd
            segments.withUnsafeBufferPointer { segs in
                ck_attend_block(q + first, qSink.map { $0 + first }, Int64(qDim), Int32(queries.count), Int32(members.count),
                                Int32(hd), positions + queries.lowerBound, Int64(window), Int64(sinks),
                                segs.baseAddress, Int32(segs.count), 1 / Float(hd).squareRoot(), scratch,
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
