import Foundation

/// Sampling settings: llama.cpp's defaults, but for the repetition penalty, which is on.
///
/// Why on: at llama.cpp's defaults (penalty off) 10 of 36 replies of this 135M model looped
/// (12 prompts × 3 seeds, a run of 8 words three times or more: scripts/loop-rate.py; "Write
/// a short poem about the sea." gave one line ~60 times until the token limit). A penalty of
/// 1.1 over the reply's last 256 tokens: 0 of 36 (docs/benchmarks.md, sampling). It weighs
/// only the reply's own tokens, not the prompt's: an answer copies a code or a name from the
/// document or the passage read before the question, and that must not cost it.
public struct SamplerSettings: Equatable, Codable {
    public var temperature: Float = 0.8      // ≤ 0: greedy
    public var topK: Int = 40                // 0: off
    public var topP: Float = 0.95            // 1: off
    public var minP: Float = 0.05            // 0: off
    public var repeatPenalty: Float = 1.1    // 1: off
    public var repeatLastN: Int = 256
    public var seed: UInt64 = 0
    public init() {}

    /// Why these settings cannot sample, named as the flags and /set name them (nil when
    /// they can). Flags, /set and saved sessions are all checked with it: a session holding
    /// repeat-last-n -1 crashed on resume.
    public var problem: String? {
        if !(temperature >= 0 && temperature.isFinite) { return "temp must be 0 or more" }
        if topK < 0 { return "top-k must be 0 or more" }
        if !(topP > 0 && topP <= 1) { return "top-p must be in (0, 1]" }
        if !(minP >= 0 && minP < 1) { return "min-p must be in [0, 1)" }
        if !(repeatPenalty > 0 && repeatPenalty.isFinite) { return "repeat-penalty must be positive" }
        if repeatLastN < 0 { return "repeat-last-n must be 0 or more" }
        return nil
    }
}

/// Picks the next token from logits. The chain is llama.cpp's: repetition penalty, top-k,
/// top-p, min-p, temperature, then a draw; temperature ≤ 0 takes the argmax after the penalty.
public struct Sampler {
    public var settings: SamplerSettings
    public var rng: RandomGenerator
    // Reused between calls (capacity kept) so sampling a token allocates nothing new.
    private var candidates: [(id: Int, logit: Float)] = []
    private var probs: [Float] = []

    public init(settings: SamplerSettings) {
        self.settings = settings
        rng = RandomGenerator(seed: settings.seed)
    }

    /// `recent` is the reply so far; its last `repeatLastN` ids are penalized.
    public mutating func sample(_ logits: UnsafeBufferPointer<Float>, recent: [Int]) -> Int {
        let s = settings
        let penalized = Set(s.repeatPenalty != 1 ? recent.suffix(s.repeatLastN) : [])
        // CTRL's penalty (Keskar et al. 2019), as llama.cpp applies it: shrink positive
        // logits, grow negative ones.
        func logit(_ i: Int) -> Float {
            let l = logits[i]
            guard penalized.contains(i) else { return l }
            return l > 0 ? l / s.repeatPenalty : l * s.repeatPenalty
        }
        if s.temperature <= 0 {
            var best = 0, bestLogit = -Float.infinity
            for i in 0..<logits.count { let l = logit(i); if l > bestLogit { bestLogit = l; best = i } }
            return best
        }

        candidates.removeAll(keepingCapacity: true)
        for i in 0..<logits.count { candidates.append((i, logit(i))) }
        if s.topK > 0 && s.topK < candidates.count {
            Self.keepLargest(&candidates, s.topK)
        } else {
            candidates.sort { $0.logit > $1.logit }
        }
        // Probabilities at temperature 1 for the truncation steps.
        let maxLogit = candidates[0].logit
        probs.removeAll(keepingCapacity: true)
        for c in candidates { probs.append(expf(c.logit - maxLogit)) }
        var total = probs.reduce(0, +)
        if s.topP < 1 {
            var cum: Float = 0, keep = candidates.count
            for (i, p) in probs.enumerated() { cum += p / total; if cum >= s.topP { keep = i + 1; break } }
            candidates.removeLast(candidates.count - keep); probs.removeLast(probs.count - keep)
        }
        if s.minP > 0 {
            let floor = s.minP * probs[0]  // probs[0] is the largest
            let keep = max(1, probs.firstIndex { $0 < floor } ?? probs.count)
            candidates.removeLast(candidates.count - keep); probs.removeLast(probs.count - keep)
        }
        // Temperature, then draw.
        for i in candidates.indices { probs[i] = expf((candidates[i].logit - maxLogit) / s.temperature) }
        total = probs.reduce(0, +)
        var r = Float(rng.nextUnit()) * total
        for (i, p) in probs.enumerated() {
            r -= p
            if r < 0 { return candidates[i].id }
        }
        return candidates[candidates.count - 1].id
    }

    /// Keeps the k largest logits, sorted descending, without sorting the whole vocabulary.
    public static func keepLargest(_ c: inout [(id: Int, logit: Float)], _ k: Int) {
        var top = Array(c.prefix(k)).sorted { $0.logit > $1.logit }
        for item in c.dropFirst(k) where item.logit > top[k - 1].logit {
            var i = k - 1
            while i > 0 && top[i - 1].logit < item.logit { top[i] = top[i - 1]; i -= 1 }
            top[i] = item
        }
        c = top
    }
}
