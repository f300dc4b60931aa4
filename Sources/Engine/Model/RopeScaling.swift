import Foundation

/// How RoPE frequencies are stretched so attention can reach past the trained context.
///
/// - `none`: θ_i = base^(−2i/d), as trained.
/// - `linear` (position interpolation, Chen et al. 2023): every θ_i divided by the factor s.
/// - `yarn` (Peng et al. 2023, "YaRN: Efficient Context Window Extension of Large Language
///   Models"; reference code github.com/jquesnelle/yarn, and llama.cpp's ggml_rope_yarn):
///   dimensions that turn many times within the original context (high frequencies) keep
///   θ_i ("extrapolation"), those that turn less than once are divided by s
///   ("interpolation"), and a linear ramp blends the two between the correction dimensions
///   [low, high]; cos and sin are multiplied by mscale = attn_factor · (1 + 0.1·ln s), so
///   q·k grows by mscale², countering the flatter attention of a longer context.
public struct RopeScaling: Equatable {
    public enum Kind: String, CaseIterable { case none, linear, yarn }

    public var kind: Kind
    public var factor: Double            // s ≥ 1: how many times the original context
    public var originalContext: Int      // the context the model was trained with
    public var betaFast: Double = 32     // YaRN: dims turning ≥ betaFast times keep θ_i
    public var betaSlow: Double = 1      // YaRN: dims turning ≤ betaSlow times get θ_i / s
    public var extFactor: Double? = nil  // YaRN ramp weight; nil: 1 for yarn, 0 otherwise
    public var attnFactor: Double = 1

    public init(kind: Kind, factor: Double = 1, originalContext: Int) {
        self.kind = kind
        self.factor = factor
        self.originalContext = originalContext
    }

    public static func none(originalContext: Int) -> RopeScaling { RopeScaling(kind: .none, originalContext: originalContext) }

    /// What the GGUF states: `{arch}.rope.scaling.type`, `.factor`, `.original_context_length`
    /// (none when absent).
    public init(config c: ModelConfig) {
        let kind = c.ropeScalingType.flatMap(Kind.init(rawValue:)) ?? .none
        let factor = c.ropeScalingFactor ?? 1
        self.init(kind: factor > 1 ? kind : .none, factor: factor > 1 ? factor : 1,
                  originalContext: c.ropeOriginalContext ?? c.contextLength)
    }

    /// The context the scaled model is meant to cover.
    public var scaledContext: Int { kind == .none ? originalContext : Int((Double(originalContext) * factor).rounded()) }

    var effectiveExtFactor: Double { extFactor ?? (kind == .yarn ? 1 : 0) }

    /// YaRN's correction range: the dimension pair index at which a frequency turns
    /// `rotations` times over the original context, d·ln(L / (2π·rotations)) / (2 ln base),
    /// floored for beta_fast and ceiled for beta_slow, clamped to [0, d − 1] — as
    /// ggml_rope_yarn_corr_dims computes it.
    public static func correctionDims(headDim d: Int, originalContext: Int, base: Double,
                                      betaFast: Double = 32, betaSlow: Double = 1) -> (low: Double, high: Double) {
        func dim(_ rotations: Double) -> Double {
            Double(d) * log(Double(originalContext) / (rotations * 2 * Double.pi)) / (2 * log(base))
        }
        return (max(0, floor(dim(betaFast))), min(Double(d - 1), ceil(dim(betaSlow))))
    }

    /// The factor on cos and sin: attn_factor, times 1 + 0.1·ln s when the YaRN ramp is on.
    public var mscale: Double {
        effectiveExtFactor != 0 ? attnFactor * (1 + 0.1 * log(factor)) : attnFactor
    }

    /// θ_i for i < d/2 after scaling. θ·p is linear in p, so YaRN's per-position blend
    /// θ_interp·(1 − ramp) + θ_extrap·ramp is a per-dimension frequency. It is written as
    /// θ_interp + (θ_extrap − θ_interp)·ramp so that s = 1 gives θ_i bit for bit.
    public func frequencies(headDim d: Int, base: Double) -> [Double] {
        let s = kind == .none ? 1 : factor
        let (low, high) = Self.correctionDims(headDim: d, originalContext: originalContext, base: base,
                                              betaFast: betaFast, betaSlow: betaSlow)
        let ext = kind == .yarn ? effectiveExtFactor : 0
        return (0..<d / 2).map { i in
            let extrap = pow(base, -2.0 * Double(i) / Double(d))
            let interp = extrap / s
            guard ext != 0 else { return interp }
            // ramp 1 below `low` (fast dims: extrapolate), 0 above `high` (slow: interpolate).
            let y = (Double(i) - low) / max(0.001, high - low)
            let ramp = (1 - min(1, max(0, y))) * ext
            return interp + (extrap - interp) * ramp
        }
    }

    /// One line for notes and reports, e.g. "YaRN ×2 (original context 8192)".
    public var summary: String {
        switch kind {
        case .none: return "no RoPE scaling"
        case .linear: return String(format: "linear RoPE scaling ×%g", factor)
        case .yarn: return String(format: "YaRN ×%g (original context %d)", factor, originalContext)
        }
    }
}
