import Engine
import XCTest

final class SamplerTests: XCTestCase {
    func sample(_ logits: [Float], _ configure: (inout SamplerSettings) -> Void, recent: [Int] = [], seed: UInt64 = 1) -> Int {
        var s = SamplerSettings()
        s.seed = seed
        configure(&s)
        var sampler = Sampler(settings: s)
        return logits.withUnsafeBufferPointer { sampler.sample($0, recent: recent) }
    }

    func testGreedyIsArgmax() {
        XCTAssertEqual(sample([0.1, 3, 2.9, -1], { $0.temperature = 0 }), 1)
    }

    func testRepeatPenaltyCanChangeTheArgmax() {
        let logits: [Float] = [0.1, 3, 2.9, -1]
        XCTAssertEqual(sample(logits, { $0.temperature = 0; $0.repeatPenalty = 1.1 }, recent: [1]), 2)
        XCTAssertEqual(sample(logits, { $0.temperature = 0; $0.repeatPenalty = 1.1; $0.repeatLastN = 1 }, recent: [1, 0]), 1,
                       "only the last N tokens are penalized")
    }

    func testTopKOneIsGreedy() {
        for seed in 0..<50 as Range<UInt64> {
            XCTAssertEqual(sample([0.1, 3, 2.9, -1], { $0.topK = 1; $0.temperature = 1.5 }, seed: seed), 1)
        }
    }

    func testMinPAndTopPCutTheTail() {
        // probabilities ≈ [0.64, 0.24, 0.09, 0.03]
        let logits: [Float] = [3, 2, 1, 0]
        var seen = Set<Int>()
        for seed in 0..<400 as Range<UInt64> {
            seen.insert(sample(logits, { $0.temperature = 1; $0.topK = 0; $0.topP = 1; $0.minP = 0.2 }, seed: seed))
        }
        XCTAssertEqual(seen, [0, 1], "min-p 0.2 keeps tokens with p ≥ 0.2·0.64")
        seen = []
        for seed in 0..<400 as Range<UInt64> {
            seen.insert(sample(logits, { $0.temperature = 1; $0.topK = 0; $0.minP = 0; $0.topP = 0.7 }, seed: seed))
        }
        XCTAssertEqual(seen, [0, 1], "top-p 0.7 needs the two most likely")
    }

    func testDistributionFollowsTemperature() {
        let logits: [Float] = [1, 0]
        var counts = [0, 0]
        var s = SamplerSettings()
        s.temperature = 1; s.topK = 0; s.topP = 1; s.minP = 0; s.seed = 99
        var sampler = Sampler(settings: s)
        for _ in 0..<20000 { counts[logits.withUnsafeBufferPointer { sampler.sample($0, recent: []) }] += 1 }
        let p = Double(counts[0]) / 20000
        XCTAssertEqual(p, 1 / (1 + exp(-1)), accuracy: 0.015) // 0.731
    }

    func testSeedReproducesAReply() throws {
        let (model, tokenizer) = TestSupport.shared
        func reply(seed: UInt64) throws -> [Int] {
            var s = SamplerSettings()
            s.seed = seed
            s.temperature = 1.0
            let g = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: s), cacheCapacity: 64)
            try g.feed(tokenizer.encode("Once upon a time"))
            return g.generate(maxTokens: 12).ids
        }
        let a = try reply(seed: 1234), b = try reply(seed: 1234), c = try reply(seed: 99)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }
}
