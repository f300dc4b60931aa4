import CKernels

extension KVCache {
    /// Segments `writeSegments` writes at most for one KV head: the memory's, the sinks, the
    /// window and the new keys.
    static let maxSegmentsPerHead = BlockMemory.maxSegments + 5

    /// What KV head h of layer l attends to, as runs of keys written to `out` (room for
    /// `maxSegmentsPerHead`); returns how many. The one place this list is made, for a prefill
    /// chunk (ChunkAttention) and for one decoded token (Transformer.attend):
    /// - the block memory's runs: the recalled blocks and the block being filled, never masked
    ///   by the window, without `hidden` positions;
    /// - the sinks, scored with the sink-rotated query when `separateSinkQuery` (else they are
    ///   one run with the window: the same arithmetic as a dense cache's, while a stream fits);
    /// - the window's slots `sinks ..< held`. A chunk attends before its keys are stored;
    ///   without a memory it sees only the last `window` positions, older keys masked by
    ///   position (`slotPositions`, the stream position of each slot), and with a memory the
    ///   keys that leave the window during the chunk stay visible, at their true distance
    ///   (the memory takes them only afterwards). One token does the same with a memory; without
    ///   one it is stored first, so its window already holds it and no longer the key that left.
    ///   Positions in `hidden` are left out (a run of positions is at most two runs of ring
    ///   slots, so the window becomes at most three runs);
    /// - `own`: the new keys not in the cache (none for a token stored first).
    func writeSegments(layer l: Int, head h: Int, held: Int, slotPositions: UnsafePointer<Int64>?,
                       separateSinkQuery: Bool, own: ck_kv_segment, into out: UnsafeMutablePointer<ck_kv_segment>) -> Int {
        let view = self.view(layer: l), heldSinks = separateSinkQuery ? min(policy.sinks, held) : 0
        var n = memoryLayers[l].flatMap { memory?.writeSegments(layer: $0, head: h, hidden: hidden, into: out) } ?? 0
        func append(first: Int, count: Int, sinkQuery: Bool, windowed: Bool) {
            guard count > 0 else { return }
            out[n] = view.segment(head: h, first: first, count: count, headDim: headDim, sinkQuery: sinkQuery,
                                  windowed: windowed, positions: slotPositions.map { $0 + first })
            n += 1
        }
        append(first: 0, count: heldSinks, sinkQuery: true, windowed: false)
        let windowed = memory == nil && slotPositions != nil
        if let hidden, !hidden.isEmpty {
            var start = heldSinks
            for slot in heldSinks..<held where hidden.contains(Int(positions[slot])) {
                append(first: start, count: slot - start, sinkQuery: false, windowed: windowed)
                start = slot + 1
            }
            append(first: start, count: held - start, sinkQuery: false, windowed: windowed)
        } else {
            append(first: heldSinks, count: held - heldSinks, sinkQuery: false, windowed: windowed)
        }
        if own.count > 0 { out[n] = own; n += 1 }
        return n
    }

    /// What KV head h of a local layer (Gemma 3's sliding-window layers) attends to from a
    /// chunk: every slot held, sinks included, masked by position to the layer's span
    /// (ck_attend_block's window rule with no sinks), then the chunk's own keys. No memory.
    func writeLocalSegments(layer l: Int, head h: Int, held: Int, slotPositions: UnsafePointer<Int64>?, own: ck_kv_segment,
                            into out: UnsafeMutablePointer<ck_kv_segment>) -> Int {
        var n = 0
        if held > 0 {
            out[n] = view(layer: l).segment(head: h, first: 0, count: held, headDim: headDim, sinkQuery: false, windowed: true,
                                             positions: slotPositions)
            n += 1
        }
        if own.count > 0 { out[n] = own; n += 1 }
        return n
    }

    /// What KV head h of a local layer attends to from one token at position p, stored
    /// first: the slots of positions p − span + 1 … p (at most three runs: sink slots, then
    /// the ring's end and start). The cache must hold them: a window no shorter than the span.
    func writeLocalSegments(layer l: Int, head h: Int, through p: Int, span: Int,
                            into out: UnsafeMutablePointer<ck_kv_segment>) -> Int {
        let view = self.view(layer: l), s = policy.sinks, first = max(0, p - span + 1)
        var n = 0
        func append(slot: Int, count: Int) {
            guard count > 0 else { return }
            out[n] = view.segment(head: h, first: slot, count: count, headDim: headDim, sinkQuery: false, windowed: false, positions: nil)
            n += 1
        }
        if first < s { append(slot: first, count: min(p + 1, s) - first) }
        if p >= s {
            let a = slot(ofPosition: max(first, s)), b = slot(ofPosition: p)
            if a <= b {
                append(slot: a, count: b - a + 1)
            } else {
                append(slot: a, count: capacity - a)
                append(slot: s, count: b - s + 1)
            }
        }
        return n
    }
}
