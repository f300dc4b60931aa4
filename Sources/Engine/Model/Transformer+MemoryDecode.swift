import CKernels

extension Transformer {
    /// Step 3–4 for one token when a block memory holds something: RoPE, the memory's
    /// re-ranking when due, then every head over the cache's sinks and window, the recalled
    /// blocks, the block being filled and the token itself, in one softmax
    /// (ck_pool_attend_segments); its keys and values go into the cache afterwards, evicting
    /// into the memory — the order `attendChunk` keeps for a chunk. Decoding used to go
    /// through `attendChunk` with n = 1, whose block kernel makes two sgemm calls per tile of
    /// keys: with memory on it ran at 0.69–0.84× of memory off after 100–128K tokens.
    func attendWithMemory(layer l: Int, q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                          position p: Int, cache: KVCache, memory: BlockMemory, out: UnsafeMutablePointer<Float>) {
        let c = config, hd = c.headDim
        let separateSinkQuery = cache.sinkQueryPosition(p) != p
        rotate(q: q, qSink: separateSinkQuery ? qSink : nil, k: k, position: p, cache: cache)
        memory.noteQueries(layer: l, queries: q, n: 1, first: p, headCount: c.headCount)
        memory.rank(layer: l, queries: separateSinkQuery ? qSink : q, n: 1, headCount: c.headCount, full: false)

        let view = cache.view(layer: l), held = min(p, cache.capacity), heldSinks = min(cache.policy.sinks, held)
        // Into the preallocated segment table (this runs per layer per token: no arrays).
        var n = 0
        func append(_ segment: ck_kv_segment) {
            if segment.count > 0 { segments[n] = segment; n += 1 }
        }
        segmentOffsets[0] = 0
        for h in 0..<c.kvHeadCount {
            n += memory.writeSegments(layer: l, head: h, into: segments + n)
            append(view.segment(head: h, first: 0, count: heldSinks, headDim: hd, sinkQuery: true, windowed: false, positions: nil))
            append(view.segment(head: h, first: heldSinks, count: held - heldSinks, headDim: hd, sinkQuery: false,
                                windowed: false, positions: nil))
            append(ck_kv_segment(type: Int32(CK_KV_F32.rawValue), sink_query: 0, windowed: 0,   // the token itself
                                 keys: k + h * hd, values: v + h * hd, key_scales: nil, value_scales: nil,
                                 row_stride: Int64(hd), count: 1, positions: nil))
            segmentOffsets[h + 1] = Int32(n)
        }
        assert(scoresStride > ck_pool_attend_segments_scratch(Int32(c.headCount), Int32(c.kvHeadCount), Int32(hd), 1))
        ck_pool_attend_segments(pool.handle, separateSinkQuery ? qSink : q, q, segments, segmentOffsets,
                                Int32(c.headCount), Int32(c.kvHeadCount), Int32(hd), 1 / Float(hd).squareRoot(),
                                scores, Int64(scoresStride), out)
        cache.store(layer: l, position: p, key: k, value: v)
    }
}
