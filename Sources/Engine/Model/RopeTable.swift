import Foundation

/// Precomputed RoPE cos/sin, so the per-token path calls no transcendental function.
/// Position p, pair i turns by the angle p·θ_i with θ_i = base^(−2i/head_dim) (RoFormer,
/// Su et al. 2021; llama.cpp ggml_rope), or the scaled θ_i of `RopeScaling`; cos and sin
/// carry the scaling's mscale.
///
/// Positions below `tabulated` (the trained or scaled context, at most 2^16) come from one
/// table. A sliding-window stream hands out absolute positions without end (KVCache.swift),
/// so beyond the table p = a·B + b is composed from two tables by angle addition:
/// cos(aBθ + bθ) = cos(aBθ)cos(bθ) − sin(aBθ)sin(bθ). The coarse table grows by one row
/// per B = 1024 positions, the only trigonometry a stream ever adds.
///
/// The table stops at 2^16 rows because a model file states its context: one claiming
/// 10^7 tokens took 2.8 GB and 8 s to start, for positions a stream reaches a block at a time.
///
/// Angles are computed in double: at position 8191 the fastest pair turns ~8191 radians, and
/// float's ulp there (~0.001) would already move the logits visibly.
public final class RopeTable {
    public let headDim: Int
    public let positions: Int
    /// Rows of the direct table: positions below this are looked up, the rest composed.
    public let tabulated: Int
    static let maxTabulated = 1 << 16
    public let scaling: RopeScaling
    public let mscale: Double
    private let cos: [Float]          // [tabulated][headDim/2], times mscale
    private let sin: [Float]          // [tabulated][headDim/2], times mscale
    private let theta: [Double]       // [headDim/2] θ_i after scaling
    private static let block = 1024
    private var fine: [Double] = []   // [B][headDim/2] cos, sin interleaved: of b·θ_i, b < B
    private var coarse: [Double] = [] // [a][headDim/2] cos, sin interleaved: of a·B·θ_i

    /// `frequencyFactors` (Llama 3.x's `rope_freqs.weight`, one per pair): θ_i is divided by
    /// factor i, as ggml_rope_ext's freq_factors do.
    public init(headDim: Int, positions: Int, base: Double, scaling: RopeScaling? = nil, frequencyFactors: [Float]? = nil) {
        let scaling = scaling ?? .none(originalContext: positions)
        self.headDim = headDim
        self.positions = positions
        tabulated = min(positions, Self.maxTabulated)
        self.scaling = scaling
        let half = headDim / 2
        var theta = scaling.frequencies(headDim: headDim, base: base)
        if let f = frequencyFactors { for i in 0..<half { theta[i] /= Double(f[i]) } }
        let m = scaling.mscale
        self.theta = theta
        self.mscale = m
        var c = [Float](repeating: 0, count: tabulated * half)
        var s = c
        for p in 0..<tabulated {
            for i in 0..<half {
                let angle = Double(p) * theta[i]
                c[p * half + i] = Float(Foundation.cos(angle) * m)
                s[p * half + i] = Float(Foundation.sin(angle) * m)
            }
        }
        cos = c
        sin = s
    }

    /// Writes position p's cos and sin rows (head_dim/2 each).
    func fill(_ p: Int, cos c: UnsafeMutablePointer<Float>, sin s: UnsafeMutablePointer<Float>) {
        let half = headDim / 2
        if p < tabulated {
            withRow(p) { cr, sr in
                c.update(from: cr, count: half)
                s.update(from: sr, count: half)
            }
            return
        }
        let a = p / Self.block, b = p % Self.block
        if fine.isEmpty { fine = angles(step: 1, rows: Self.block) }
        if a >= coarse.count / headDim { coarse += angles(step: Self.block, rows: a + 1 - coarse.count / headDim, from: coarse.count / headDim) }
        coarse.withUnsafeBufferPointer { hi in
            fine.withUnsafeBufferPointer { lo in
                let h = hi.baseAddress! + a * headDim, l = lo.baseAddress! + b * headDim
                for i in 0..<half {
                    let (ch, sh, cl, sl) = (h[2 * i], h[2 * i + 1], l[2 * i], l[2 * i + 1])
                    c[i] = Float((ch * cl - sh * sl) * mscale)
                    s[i] = Float((sh * cl + ch * sl) * mscale)
                }
            }
        }
    }

    /// Rows `from ..< from + rows` of cos, sin (interleaved) of (row·step)·θ_i.
    private func angles(step: Int, rows: Int, from: Int = 0) -> [Double] {
        var out = [Double](repeating: 0, count: rows * headDim)
        for r in 0..<rows {
            for i in 0..<headDim / 2 {
                let angle = Double((from + r) * step) * theta[i]
                out[r * headDim + 2 * i] = Foundation.cos(angle)
                out[r * headDim + 2 * i + 1] = Foundation.sin(angle)
            }
        }
        return out
    }

    /// Calls body with the cos and sin rows of position p.
    @inline(__always)
    func withRow<R>(_ p: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Float>) -> R) -> R {
        precondition(p >= 0 && p < tabulated, "RoPE position \(p) outside table of \(tabulated)")
        let half = headDim / 2
        return cos.withUnsafeBufferPointer { c in
            sin.withUnsafeBufferPointer { s in body(c.baseAddress! + p * half, s.baseAddress! + p * half) }
        }
    }
}

extension RopeTable {
    /// Position p's cos and sin as arrays, from the table or composed beyond it (for tests
    /// and diagnostics).
    public func rowValues(_ p: Int) -> (cos: [Float], sin: [Float]) {
        let half = headDim / 2
        var c = [Float](repeating: 0, count: half), s = c
        c.withUnsafeMutableBufferPointer { cb in s.withUnsafeMutableBufferPointer { sb in fill(p, cos: cb.baseAddress!, sin: sb.baseAddress!) } }
        return (c, s)
    }
}
