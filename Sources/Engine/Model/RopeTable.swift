import Foundation

/// Precomputed RoPE cos/sin for every position the cache can hand out, so the per-token path
/// calls no transcendental function. Row p holds head_dim/2 angles p·θ_i with
/// θ_i = base^(−2i/head_dim) (RoFormer, Su et al. 2021; llama.cpp ggml_rope).
///
/// Angles are computed in double: at position 8191 the fastest pair turns ~8191 radians, and
/// float's ulp there (~0.001) would already move the logits visibly.
public struct RopeTable {
    public let headDim: Int
    public let positions: Int
    private(set) var cos: [Float]   // [positions][headDim/2]
    private(set) var sin: [Float]   // [positions][headDim/2]
    private let inv: [Double]       // [headDim/2] θ_i

    /// `linearScale` > 1 divides positions (linear interpolation, "--rope-scaling linear").
    public init(headDim: Int, positions: Int, base: Double, linearScale: Double = 1) {
        self.headDim = headDim
        self.positions = positions
        let half = headDim / 2
        var c = [Float](repeating: 0, count: positions * half)
        var s = c
        let inv = (0..<half).map { Foundation.pow(base, -2.0 * Double($0) / Double(headDim)) / linearScale }
        self.inv = inv
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Double(p) * inv[i]
                c[p * half + i] = Float(Foundation.cos(angle))
                s[p * half + i] = Float(Foundation.sin(angle))
            }
        }
        cos = c
        sin = s
    }

    /// Writes position p's cos and sin rows (head_dim/2 each): from the table, or computed
    /// for positions beyond it (a stream past the table; #5 revisits this with YaRN).
    func fill(_ p: Int, cos c: UnsafeMutablePointer<Float>, sin s: UnsafeMutablePointer<Float>) {
        let half = headDim / 2
        if p < positions {
            withRow(p) { cr, sr in
                c.update(from: cr, count: half)
                s.update(from: sr, count: half)
            }
            return
        }
        for i in 0..<half {
            let angle = Double(p) * inv[i]
            c[i] = Float(Foundation.cos(angle))
            s[i] = Float(Foundation.sin(angle))
        }
    }

    /// Calls body with the cos and sin rows of position p.
    @inline(__always)
    func withRow<R>(_ p: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Float>) -> R) -> R {
        precondition(p >= 0 && p < positions, "RoPE position \(p) outside table of \(positions)")
        let half = headDim / 2
        return cos.withUnsafeBufferPointer { c in
            sin.withUnsafeBufferPointer { s in body(c.baseAddress! + p * half, s.baseAddress! + p * half) }
        }
    }
}

extension RopeTable {
    /// Row p as arrays (for tests and diagnostics).
    public func rowValues(_ p: Int) -> (cos: [Float], sin: [Float]) {
        withRow(p) { c, s in (Array(UnsafeBufferPointer(start: c, count: headDim / 2)), Array(UnsafeBufferPointer(start: s, count: headDim / 2))) }
    }
}
