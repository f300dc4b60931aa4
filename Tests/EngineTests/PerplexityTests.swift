@testable import Engine
import CKernels
import Foundation
import XCTest

/// `scroll ppl --chunk N`: llama-perplexity's protocol, held to the same sum computed token by
/// token (the decode path, each token's logits from the one before), with BOS in place of each
/// chunk's first token.
final class PerplexityTests: XCTestCase {
    func testChunksScoreTheirSecondHalfAsLlamaPerplexityDoes() throws {
        let (model, tokenizer) = TestSupport.shared
        // Both ways on the exact float path: the fast paths differ between prefill (sgemm, or
        // VNNI int8) and decoding (int8 activations) by up to ~2% in this perplexity on the
        // AVX2 kernels, which would hide what is tested here.
        model.fastPath = false
        defer { model.fastPath = true }
        let text = String(repeating: "The keeper of the lighthouse wrote the ships' names in a green book every night. ", count: 6)
            + "Then the storm came, and for eleven days no ship passed the rocks."
        let tokens = tokenizer.encode(text)
        let n = 48, bos = 1
        XCTAssertGreaterThanOrEqual(tokens.count, 2 * n + 5, "two chunks and a remainder that is dropped")
        let evaluator = PerplexityEvaluator(model: model, policy: .dense(n))
        let result = evaluator.evaluateChunks(tokens, chunk: n, bos: bos)
        let chunks = tokens.count / n
        XCTAssertEqual(result.segments.count, chunks)
        XCTAssertEqual(result.tokens, chunks * (n - 1 - n / 2))

        var nll = 0.0
        for c in 0..<chunks {
            var ids = Array(tokens[c * n ..< (c + 1) * n])
            ids[0] = bos
            let g = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: SamplerSettings()),
                              cache: model.makeCache(policy: .dense(n)))
            for pos in 0..<(n - 1) {
                try g.feed([ids[pos]])
                guard pos >= n / 2 else { continue }
                let logits = try XCTUnwrap(g.lastLogits)
                nll -= Double(ck_log_softmax_at(logits.baseAddress!, Int32(logits.count), Int32(tokens[c * n + pos + 1])))
            }
        }
        let expected = exp(nll / Double(result.tokens))
        // Chunked prefill against token-by-token decoding, both in float: within 0.1%.
        XCTAssertEqual(result.perplexity, expected, accuracy: 0.001 * expected)
        XCTAssertGreaterThan(result.perplexity, 1)
    }
}
