import ArgumentParser
import Engine
import Foundation

/// `scroll bench`: llama-bench's two figures on the same definitions, so the two tools can
/// be compared side by side — pp: a prompt of N random tokens into an empty cache;
/// tg: N tokens generated one at a time from an empty cache. Each repetition starts fresh;
/// one untimed warm-up run comes first.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure prompt-processing and generation speed (llama-bench style).")

    @OptionGroup var modelOptions: ModelOptions
    @Option(name: [.customShort("p"), .customLong("n-prompt")], help: "Prompt tokens for the pp test (0 skips it).")
    var promptTokens = 512
    @Option(name: [.customShort("g"), .customLong("n-gen")], help: "Generated tokens for the tg test (0 skips it).")
    var genTokens = 128
    @Option(name: [.customShort("r"), .customLong("repetitions")], help: "Timed repetitions of each test.")
    var repetitions = 5
    @Option(help: "Stream this many tokens through a sinks + window cache, measuring generation speed and resident memory at 1K, 10K, 100K, … tokens (replaces the pp/tg tests).")
    var stream: Int?
    @Option(help: "Measure sessions instead: read this text into the cache, save it (int8 and lossless), load it back; sizes, times and perplexity after resuming.")
    var sessionText: String?
    @Option(help: "Session bench: tokens of the text read before saving.")
    var sessionTokens = 8192
    @Option(help: "Session bench: tokens after them over which perplexity is compared.")
    var sessionEval = 512
    @OptionGroup var cacheOptions: CacheOptions
    @Flag(help: "Prefill's matrix products through OpenBLAS sgemm even where the int8 kernels (AVX-512 VNNI) would run, to compare the two.")
    var sgemmPrefill = false
    @Flag(help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        guard promptTokens >= 0, genTokens >= 0, promptTokens + genTokens > 0 else { throw ValidationError("nothing to measure") }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1") }
    }

    struct Result: Codable {
        let test: String
        let tokens: Int
        let tokensPerSecond: Double
        let stddev: Double
        let samples: [Double]
    }

    func run() throws {
        if let stream { return try runStream(stream) }
        if let sessionText { return try runSessionBench(sessionText) }
        try reportingErrors {
            let (model, _) = try modelOptions.load()
            model.int8Prefill = !sgemmPrefill
            var results: [Result] = []
            var rng = RandomGenerator(seed: 42)
            let vocab = model.config.vocabSize
            if promptTokens > 0 {
                let prompt = (0..<promptTokens).map { _ in Int(rng.next() % UInt64(vocab)) }
                results.append(measure("pp\(promptTokens)", tokens: promptTokens) {
                    let cache = model.makeCache(capacity: promptTokens)
                    model.prefill(prompt, cache: cache)
                })
            }
            if genTokens > 0 {
                results.append(measure("tg\(genTokens)", tokens: genTokens) {
                    let cache = model.makeCache(capacity: genTokens + 1)
                    var token = 1
                    for _ in 0..<genTokens {
                        let logits = model.forward(token: token, cache: cache)
                        token = logits.indices.max { logits[$0] < logits[$1] }!
                    }
                })
            }
            report(results, model: model)
        }
    }

    private func measure(_ name: String, tokens: Int, _ body: () -> Void) -> Result {
        body() // warm-up: page in the weights, settle the workers
        var rates: [Double] = []
        for _ in 0..<repetitions {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            rates.append(Double(tokens) / seconds)
        }
        let mean = rates.reduce(0, +) / Double(rates.count)
        let variance = rates.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(1, rates.count - 1))
        return Result(test: name, tokens: tokens, tokensPerSecond: mean, stddev: variance.squareRoot(), samples: rates)
    }

    private func report(_ results: [Result], model: Transformer) {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let peakMiB = Double(usage.ru_maxrss) / 1024 // ru_maxrss is in KiB on Linux
        let modelName = URL(fileURLWithPath: model.gguf.path).lastPathComponent
        if json {
            struct Report: Codable { let model: String; let threads: Int; let peakRSSMiB: Double; let results: [Result] }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            let data = try! encoder.encode(Report(model: modelName, threads: model.pool.threads, peakRSSMiB: peakMiB, results: results))
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("| model | threads | test | t/s |")
        print("| --- | ---: | ---: | ---: |")
        for r in results {
            print("| \(modelName) | \(model.pool.threads) | \(r.test) | \(String(format: "%.2f ± %.2f", r.tokensPerSecond, r.stddev)) |")
        }
        print(String(format: "peak RSS: %.0f MiB", peakMiB))
    }

    struct StreamPoint: Codable {
        let tokensStreamed: Int
        let generationTokensPerSecond: Double   // median over the repetitions
        let residentMiB: Double
        let elapsedSeconds: Double
        let memoryTokens: Int?
        let memoryFileMiB: Double?
    }

    /// Generation speed and resident memory as a stream grows: with a sliding window both
    /// must stay flat. Random tokens are streamed through batched prefill; at
    /// each checkpoint `repetitions` runs of `genTokens` tokens are generated one at a time
    /// (they join the stream) and the median speed is kept, since this host's speed swings.
    private func runStream(_ total: Int) throws {
        try reportingErrors {
            let (model, _) = try modelOptions.load(cacheCapacity: cacheOptions.requestedCapacity())
            let policy = try cacheOptions.policy(for: model)
            guard policy.window != nil else { throw EngineError.invalidArgument("--stream needs a window (not --dense)") }
            let cache = try cacheOptions.makeCache(for: model)
            var rng = RandomGenerator(seed: 7)
            let vocab = model.config.vocabSize
            var checkpoints: [Int] = []
            var c = 1000
            while c < total { checkpoints.append(c); c *= 10 }
            checkpoints.append(total)
            var points: [StreamPoint] = []
            let progress = ProgressLine(total: total)
            let start = DispatchTime.now().uptimeNanoseconds
            for checkpoint in checkpoints {
                while cache.tokensSeen < checkpoint {
                    let n = min(Transformer.prefillBatch, checkpoint - cache.tokensSeen)
                    model.prefill((0..<n).map { _ in Int(rng.next() % UInt64(vocab)) }, cache: cache)
                    progress.update(cache.tokensSeen)
                }
                var rates: [Double] = []
                for _ in 0..<repetitions {
                    var token = 1
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    for _ in 0..<genTokens {
                        let logits = model.forward(token: token, cache: cache)
                        token = logits.indices.max { logits[$0] < logits[$1] }!
                    }
                    rates.append(Double(genTokens) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
                }
                points.append(StreamPoint(tokensStreamed: checkpoint, generationTokensPerSecond: rates.sorted()[rates.count / 2],
                                          residentMiB: Self.residentMiB(),
                                          elapsedSeconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9,
                                          memoryTokens: cache.memory?.tokens,
                                          memoryFileMiB: cache.memory.map { Double($0.fileBytes) / 1_048_576 }))
            }
            progress.finish()
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(points), as: UTF8.self))
                return
            }
            print(CacheOptions.describe(cache))
            print("| tokens streamed | tg\(genTokens) t/s (median of \(repetitions)) | RSS MiB | elapsed s | memory tokens | memory file MiB |")
            print("| ---: | ---: | ---: | ---: | ---: | ---: |")
            for p in points {
                print(String(format: "| %d | %.1f | %.0f | %.0f | %@ | %@ |", p.tokensStreamed, p.generationTokensPerSecond, p.residentMiB,
                             p.elapsedSeconds, p.memoryTokens.map(String.init) ?? "-", p.memoryFileMiB.map { String(format: "%.0f", $0) } ?? "-"))
            }
        }
    }

    /// Current resident set size, from /proc/self/statm.
    static func residentMiB() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) else { return 0 }
        return pages * Double(sysconf(Int32(_SC_PAGESIZE))) / 1_048_576
    }
}
