import Foundation
import CKernels

/// Streaming perplexity (StreamingLLM's protocol): a long text goes through the cache in
/// chunks, and every token is scored by the logits of the position before it, so the model
/// is always predicting with exactly what the cache policy kept.
public final class PerplexityEvaluator {
    public struct Segment: Codable, Equatable {
        public let startToken: Int
        public let tokens: Int
        public let perplexity: Double
    }

    public struct Result: Codable {
        public let tokens: Int
        public let perplexity: Double
        public let segments: [Segment]
    }

    let model: Transformer
    public let cache: KVCache
    /// The output head in f32 ([vocab][d_model]), dequantized once: scoring every position
    /// is one sgemm per chunk.
    private let head: UnsafeMutablePointer<Float>
    private let logits: UnsafeMutablePointer<Float>   // [prefillBatch][vocab]

    public init(model: Transformer, policy: CachePolicy, precision: KVPrecision = .f32, memory: MemorySettings? = nil) {
        self.model = model
        cache = model.makeCache(policy: policy, precision: precision, memory: memory)
        let c = model.config
        head = .allocate(capacity: c.vocabSize * c.embeddingLength)
        for r in 0..<c.vocabSize { model.weights.output.dequantizeRow(r, into: head + r * c.embeddingLength) }
        logits = .allocate(capacity: Transformer.prefillBatch * c.vocabSize)
    }

    deinit {
        head.deallocate()
        logits.deallocate()
    }

    /// Scores every token of tokens[1...] once, from the logits at the position before it.
    /// With `chunkRestart` (the dense comparison), the cache is emptied every that many
    /// tokens, so the text is read as independent chunks (like llama-perplexity, except that
    /// all positions of a chunk are scored, not only its second half). `progress` gets the
    /// tokens done.
    public func evaluate(_ tokens: [Int], segmentLength: Int, chunkRestart: Int? = nil,
                         progress: ((Int) -> Void)? = nil) -> Result {
        let c = model.config, vocab = c.vocabSize
        var nll = 0.0, scored = 0
        var segments: [Segment] = []
        var segNLL = 0.0, segCount = 0, segStart = 1
        var i = 0
        cache.reset()
        while i < tokens.count - 1 {
            var n = min(Transformer.prefillBatch, tokens.count - 1 - i)
            if let restart = chunkRestart {
                if cache.tokensSeen >= restart { cache.reset() }
                n = min(n, restart - cache.tokensSeen)
            }
            let chunk = Array(tokens[i..<i + n])
            let hidden = model.prefillHidden(chunk, cache: cache)
            MatmulJob(matrix: nil, rows: vocab, cols: c.embeddingLength, x: hidden, out: logits, tokens: n, scratch: head)
                .run(on: model.pool)
            for t in 0..<n {
                let target = tokens[i + t + 1]
                let lp = Double(ck_log_softmax_at(logits + t * vocab, Int32(vocab), Int32(target)))
                nll -= lp
                segNLL -= lp
                scored += 1
                segCount += 1
                if segCount == segmentLength {
                    segments.append(Segment(startToken: segStart, tokens: segCount, perplexity: exp(segNLL / Double(segCount))))
                    segStart += segCount
                    segNLL = 0
                    segCount = 0
                }
            }
            i += n
            progress?(i)
        }
        if segCount > 0 {
            segments.append(Segment(startToken: segStart, tokens: segCount, perplexity: exp(segNLL / Double(segCount))))
        }
        return Result(tokens: scored, perplexity: exp(nll / Double(max(1, scored))), segments: segments)
    }

    /// llama-perplexity's protocol (`-c n`), so that figures compare with llama.cpp's
    /// directly: the text cut into independent chunks of n tokens (the rest dropped), each
    /// read from an empty cache with its first token replaced by `bos` (where the model adds
    /// one), and only its second half scored: the logits at positions n/2 … n−2 predict the
    /// chunk's tokens n/2+1 … n−1. One segment per chunk. The cache must hold n tokens.
    public func evaluateChunks(_ tokens: [Int], chunk n: Int, bos: Int?, progress: ((Int) -> Void)? = nil) -> Result {
        precondition(n >= 4 && n <= cache.capacity && tokens.count >= n)
        let vocab = model.config.vocabSize, d = model.config.embeddingLength, first = n / 2
        var nll = 0.0, scored = 0
        var segments: [Segment] = []
        for start in stride(from: 0, through: tokens.count - n, by: n) {
            var ids = Array(tokens[start ..< start + n])
            if let bos { ids[0] = bos }
            cache.reset()
            var chunkNLL = 0.0
            for offset in stride(from: 0, to: n, by: Transformer.prefillBatch) {
                let m = min(Transformer.prefillBatch, n - offset)
                let hidden = model.prefillHidden(Array(ids[offset ..< offset + m]), cache: cache)
                MatmulJob(matrix: nil, rows: vocab, cols: d, x: hidden, out: logits, tokens: m, scratch: head).run(on: model.pool)
                for t in 0..<m where (first...(n - 2)).contains(offset + t) {
                    chunkNLL -= Double(ck_log_softmax_at(logits + t * vocab, Int32(vocab), Int32(tokens[start + offset + t + 1])))
                }
            }
            nll += chunkNLL
            scored += n - 1 - first
            segments.append(Segment(startToken: start + first + 1, tokens: n - 1 - first, perplexity: exp(chunkNLL / Double(n - 1 - first))))
            progress?(start + n)
        }
        return Result(tokens: scored, perplexity: exp(nll / Double(max(1, scored))), segments: segments)
    }
}

