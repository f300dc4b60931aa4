import ArgumentParser
import Engine
import Foundation

/// `scroll passkey`: passkey-retrieval accuracy per prompt length × needle depth through the
/// cache policy (DESIGN.md's protocol, Engine/Evaluation/Passkey.swift). Greedy answers.
struct PasskeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passkey", abstract: "Passkey retrieval: find a number hidden in long filler text.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var cacheOptions: CacheOptions
    @Option(name: .customLong("tokens"), parsing: .upToNextOption, help: "Prompt lengths in tokens (one or more).")
    var lengths: [Int] = [4096]
    @Option(name: .customLong("depth"), parsing: .upToNextOption, help: "Needle depths, 0 (start) to 1 (end); 'sweep' for 0, 0.25, 0.5, 0.75, 1.")
    var depths: [String] = ["sweep"]
    @Option(help: "Trials per length and depth (a new random key each).")
    var trials = 1
    @Option(help: "Seed for the keys.")
    var seed: UInt64 = 1
    @Option(name: .customLong("key"), parsing: .upToNextOption,
            help: "Use these keys instead of random ones, one trial each per length and depth (to replay a trial).")
    var keys: [Int] = []
    @Flag(help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        guard lengths.allSatisfy({ $0 >= 64 }) else { throw ValidationError("--tokens must be at least 64") }
        guard trials >= 1 else { throw ValidationError("--trials must be at least 1") }
        guard keys.allSatisfy({ $0 >= 0 }) else { throw ValidationError("--key takes non-negative integers") }
        _ = try depthValues()
    }

    func depthValues() throws -> [Double] {
        try depths.flatMap { d -> [Double] in
            if d == "sweep" { return [0, 0.25, 0.5, 0.75, 1] }
            guard let v = Double(d), v >= 0, v <= 1 else { throw ValidationError("--depth takes numbers from 0 to 1, or 'sweep' (got \(d))") }
            return [v]
        }
    }

    struct Trial: Codable {
        let length: Int; let tokens: Int; let depth: Double; let key: Int; let answer: String; let correct: Bool; let seconds: Double
        /// With a memory: of the (layer, KV head) pairs, how many recalled a block holding the key.
        let needleRecalls: Int?
        /// The two likeliest first tokens and how far apart their logits are: a small gap is
        /// an answer that any change in rounding can tip (the 32K depth-1 misses at a 1024 window).
        let firstTokens: [String]
        let firstTokenMargin: Float
    }
    struct Cell: Codable { let tokens: Int; let depth: Double; let trials: Int; let accuracy: Double }
    struct Report: Codable { let cache: String; let cells: [Cell]; let trials: [Trial] }

    /// The texts of the two highest logits and the gap between them.
    static func topTwo(_ logits: UnsafeBufferPointer<Float>, tokenizer: Tokenizer) -> ([String], Float) {
        var top = logits.enumerated().map { (id: $0.offset, logit: $0.element) }
        Sampler.keepLargest(&top, 2)
        return (top.map { tokenizer.decode([$0.id]) }, top[0].logit - top[1].logit)
    }

    func run() throws {
        try reportingErrors {
            let (model, tokenizer) = try modelOptions.load(cacheCapacity: cacheOptions.requestedCapacity(document: true))
            let policy = try cacheOptions.policy(for: model, document: true)
            if policy.window == nil, let longest = lengths.max(), longest > policy.capacity {
                throw EngineError.invalidArgument("--tokens \(longest) does not fit the dense cache of \(policy.capacity) tokens (use a window, or RoPE scaling)")
            }
            var rng = RandomGenerator(seed: seed)
            // Greedy and unpenalized: this measures retrieval, not sampling.
            var settings = SamplerSettings()
            settings.temperature = 0
            settings.repeatPenalty = 1
            var results: [Trial] = []
            var cacheDescription = ""
            for length in lengths {
                for depth in try depthValues() {
                    for trial in 0..<(keys.isEmpty ? trials : keys.count) {
                        let key = keys.isEmpty ? Int(rng.next() % 50_000) + 1 : keys[trial]
                        let ids = Passkey.prompt(tokens: length, depth: depth, key: key, tokenizer: tokenizer)
                        let generator = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: settings),
                                                  cache: try cacheOptions.makeCache(for: model, document: true))
                        cacheDescription = CacheOptions.describe(generator.cache) + ", " + model.rope.scaling.summary
                        let start = Date()
                        let progress = ProgressLine(total: ids.count)
                        try generator.feed(ids) { progress.update($0) }
                        progress.finish()
                        let needleRecalls = generator.cache.memory.map { memory in
                            memory.lastRecall().filter { r in
                                tokenizer.decode(Array(ids[r.start..<min(ids.count, r.start + r.tokens)])).contains(String(key))
                            }.map(\.picks).reduce(0, +)
                        }
                        let (firstTokens, margin) = Self.topTwo(generator.lastLogits!, tokenizer: tokenizer)
                        var answer = ""
                        generator.generate(maxTokens: 12) { answer += $0; return true }
                        let correct = Passkey.firstInteger(in: answer) == key
                        results.append(Trial(length: length, tokens: ids.count, depth: depth, key: key, answer: answer, correct: correct,
                                             seconds: Date().timeIntervalSince(start), needleRecalls: needleRecalls,
                                             firstTokens: firstTokens, firstTokenMargin: margin))
                        if !json {
                            let recalls = needleRecalls.map { "  recalled by \($0) layer-heads" } ?? ""
                            // Time and the memory's size, for the long runs (1M tokens take ~46 minutes).
                            let memory = generator.cache.memory.map {
                                String(format: ", memory %.0f MiB in RAM + %.0f MiB in its file", Double($0.ramBytes) / 1_048_576,
                                       Double($0.fileBytes) / 1_048_576)
                            } ?? ""
                            // Terminal.write flushes: a trial can take minutes, show it now, also through a pipe.
                            Terminal.write(String(format: "tokens %6d  depth %.2f  key %5d  %@  %@", ids.count, depth, key,
                                         correct ? "ok  " : "MISS", answer.replacingOccurrences(of: "\n", with: " ")) + recalls
                                  + String(format: "  first %@ by %.2f over %@", firstTokens[0].debugDescription, margin,
                                           firstTokens[1].debugDescription)
                                  + String(format: "  (%.0f s, RSS %.0f MiB", results.last!.seconds, Bench.residentMiB()) + memory + ")\n")
                        }
                    }
                }
            }
            var cells: [Cell] = []
            for length in lengths {
                for depth in try depthValues() {
                    let group = results.filter { $0.depth == depth && $0.length == length }
                    cells.append(Cell(tokens: length, depth: depth, trials: group.count,
                                      accuracy: Double(group.filter(\.correct).count) / Double(max(1, group.count))))
                }
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(Report(cache: cacheDescription, cells: cells, trials: results)), as: UTF8.self))
                return
            }
            print(cacheDescription)
            print("| tokens | depth | trials | accuracy |")
            print("| ---: | ---: | ---: | ---: |")
            for c in cells { print(String(format: "| %d | %.2f | %d | %.0f%% |", c.tokens, c.depth, c.trials, c.accuracy * 100)) }
            let total = results.filter(\.correct).count
            print(String(format: "overall %d/%d (%.0f%%)", total, results.count, 100 * Double(total) / Double(max(1, results.count))))
        }
    }
}
