import ArgumentParser
import Engine
import Foundation

/// `scroll ppl FILE`: streaming perplexity of a text file through the cache policy.
struct Ppl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppl", abstract: "Streaming perplexity of a text file (StreamingLLM protocol).")

    @Argument(help: "A text file.")
    var file: String
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var cacheOptions: CacheOptions
    @Option(name: [.customShort("n"), .customLong("max-tokens")], help: "Score at most this many tokens of the file.")
    var maxTokens: Int?
    @Option(help: "Tokens per reported segment.")
    var segment = 4096
    @Option(name: .customLong("dense-chunk"), help: "With --dense: a cache of N tokens, restarted when full (default: the trained or RoPE-scaled context).")
    var denseChunk: Int?
    @Option(help: "Score as llama-perplexity -c N does: independent chunks of N tokens, BOS first where the model adds one, the second half of each scored.")
    var chunk: Int?
    @Flag(help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        guard segment >= 1 else { throw ValidationError("--segment must be at least 1") }
        if let c = chunk, !(4...1_048_576).contains(c) { throw ValidationError("--chunk must be from 4 to 1048576") }
        if let m = maxTokens, m < 2 { throw ValidationError("--max-tokens must be at least 2") }
    }

    func run() throws {
        try reportingErrors {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw EngineError.cannotRead(file, "no such file or not readable")
            }
            let (model, tokenizer) = try modelOptions.load(cacheCapacity: cacheOptions.dense ? denseChunk : cacheOptions.requestedCapacity())
            var tokens = tokenizer.encode(String(decoding: data, as: UTF8.self))
            // A stream starts with the BOS where the model adds one, as llama.cpp's do (each
            // --chunk gets its own in place of its first token).
            if chunk == nil { tokens = tokenizer.leadingBOS + tokens }
            if let m = maxTokens, tokens.count > m { tokens = Array(tokens.prefix(m)) }
            guard tokens.count >= 2 else { throw EngineError.invalidArgument("\(file) has fewer than 2 tokens") }
            if let c = chunk, tokens.count < 2 * c {
                throw EngineError.invalidArgument("\(file) has \(tokens.count) tokens: --chunk \(c) needs at least \(2 * c), as llama-perplexity does")
            }
            let policy = try chunk.map { CachePolicy.dense($0) } ?? cacheOptions.policy(for: model)
            let restart = cacheOptions.dense ? min(denseChunk ?? policy.capacity, policy.capacity) : nil
            let evaluator = PerplexityEvaluator(model: model, policy: policy, precision: cacheOptions.kvPrecision,
                                                memory: chunk == nil ? cacheOptions.memorySettings : nil)
            let start = Date()
            let progress = ProgressLine(total: tokens.count)
            let result: PerplexityEvaluator.Result
            if let c = chunk {
                result = evaluator.evaluateChunks(tokens, chunk: c, bos: tokenizer.leadingBOS.first) { progress.update($0) }
            } else {
                result = evaluator.evaluate(tokens, segmentLength: segment, chunkRestart: restart) { progress.update($0) }
            }
            progress.finish()
            let seconds = Date().timeIntervalSince(start)
            let mode = chunk.map { "chunks of \($0) tokens, the second half of each scored (llama-perplexity -c \($0))" }
                ?? CacheOptions.describe(evaluator.cache) + (cacheOptions.dense ? ", restarted every \(restart!) tokens" : "")
            if json {
                struct Report: Codable {
                    let file: String; let mode: String; let tokens: Int; let perplexity: Double
                    let seconds: Double; let segments: [PerplexityEvaluator.Segment]
                }
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                let report = Report(file: file, mode: mode, tokens: result.tokens, perplexity: result.perplexity,
                                    seconds: seconds, segments: result.segments)
                print(String(decoding: try encoder.encode(report), as: UTF8.self))
                return
            }
            print("\(file): \(result.tokens) tokens, \(mode)")
            for s in result.segments {
                print(String(format: "  tokens %8d – %8d  ppl %8.3f", s.startToken, s.startToken + s.tokens - 1, s.perplexity))
            }
            print(String(format: "perplexity %.4f  (%.1f tokens/s)", result.perplexity, Double(result.tokens) / seconds))
        }
    }
}
