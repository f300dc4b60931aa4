import ArgumentParser
import Engine
import Foundation

/// Options every command that loads a model shares.
struct ModelOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "Path to a GGUF model (default: models/\(ModelLocator.defaultFileName)).")
    var model: String?

    @Option(name: .long, help: "Worker threads for the matrix kernels (default: number of cores).")
    var threads: Int?

    @Flag(name: .long, help: "Exact float arithmetic: weights dequantized on the fly, activations never quantized to 8 bits (slower; the reference the fast path is tested against).")
    var exact = false

    func validate() throws {
        if let t = threads, t < 1 || t > 256 { throw ValidationError("--threads must be between 1 and 256") }
    }

    var modelPath: String { model ?? ModelLocator.defaultModelPath() }
    var threadCount: Int { threads ?? ProcessInfo.processInfo.activeProcessorCount }

    func load() throws -> (Transformer, Tokenizer) {
        let transformer = try Transformer(path: modelPath, threads: threadCount)
        transformer.fastPath = !exact
        let tokenizer = try Tokenizer(gguf: transformer.gguf)
        return (transformer, tokenizer)
    }
}

/// The cache policy: attention sinks + sliding window (StreamingLLM), or dense.
struct CacheOptions: ParsableArguments {
    @Option(help: "Attention-sink tokens kept forever at the start of the cache.")
    var sinks = 4
    @Option(help: "Most recent tokens kept in the sliding window.")
    var window = 2048
    @Flag(help: "Plain dense attention up to the model's trained context (no eviction; a full context is an error).")
    var dense = false

    func validate() throws {
        guard sinks >= 0 else { throw ValidationError("--sinks must be 0 or more") }
        guard window >= 1 else { throw ValidationError("--window must be at least 1") }
    }

    func policy(for model: Transformer) throws -> CachePolicy {
        let limit = model.config.contextLength
        if dense { return .dense(limit) }
        guard sinks + window <= limit else {
            throw EngineError.invalidArgument("--sinks + --window (\(sinks + window)) exceeds the model's trained context of \(limit) tokens")
        }
        return CachePolicy(sinks: sinks, window: window)
    }
}

/// Sampling flags (llama.cpp's names and defaults).
struct SamplingOptions: ParsableArguments {
    @Option(name: [.customShort("n"), .customLong("max-tokens")], help: "Most tokens to generate per reply.")
    var maxTokens: Int = 512
    @Option(name: .customLong("temp"), help: "Temperature; 0 is greedy.")
    var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Keep the k most likely tokens (0: off).")
    var topK: Int = 40
    @Option(name: .customLong("top-p"), help: "Keep the smallest set with this much probability (1: off).")
    var topP: Float = 0.95
    @Option(name: .customLong("min-p"), help: "Drop tokens below this fraction of the top probability (0: off).")
    var minP: Float = 0.05
    @Option(name: .customLong("repeat-penalty"), help: "Penalty for tokens among the last --repeat-last-n (1: off).")
    var repeatPenalty: Float = 1.0
    @Option(name: .customLong("repeat-last-n"), help: "How many recent tokens the repeat penalty looks at.")
    var repeatLastN: Int = 64
    @Option(name: .long, help: "Random seed; the same seed reproduces a reply (default: random).")
    var seed: UInt64?

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be 0 or more") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temp must be 0 or more") }
        guard topK >= 0 else { throw ValidationError("--top-k must be 0 or more") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard minP >= 0 && minP < 1 else { throw ValidationError("--min-p must be in [0, 1)") }
        guard repeatPenalty > 0, repeatPenalty.isFinite else { throw ValidationError("--repeat-penalty must be positive") }
        guard repeatLastN >= 0 else { throw ValidationError("--repeat-last-n must be 0 or more") }
    }

    var settings: SamplerSettings {
        var s = SamplerSettings()
        s.temperature = temperature
        s.topK = topK
        s.topP = topP
        s.minP = minP
        s.repeatPenalty = repeatPenalty
        s.repeatLastN = repeatLastN
        s.seed = seed ?? UInt64.random(in: 0...UInt64.max)
        return s
    }
}

/// What the conversation starts with.
struct PromptOptions: ParsableArguments {
    @Option(name: .long, help: "System prompt: text, or @FILE (e.g. @prompts/concise.txt, or @NAME for prompts/NAME.txt).")
    var system: String?

    @Flag(name: .long, help: "No chat template: the input is fed to the model as plain text.")
    var raw = false

    /// The system prompt text: nil means the model's default.
    func systemPrompt() throws -> String? {
        guard let s = system else { return nil }
        guard s.hasPrefix("@") else { return s }
        return try PromptLibrary.load(String(s.dropFirst()))
    }
}

/// prompts/: system prompts as plain text files.
enum PromptLibrary {
    static func load(_ ref: String) throws -> String {
        let fm = FileManager.default
        var candidates = [ref]
        if !ref.contains("/") {
            candidates += ["prompts/\(ref)", "prompts/\(ref).txt"]
        }
        for path in candidates where fm.fileExists(atPath: path) {
            guard let text = fm.contents(atPath: path).map({ String(decoding: $0, as: UTF8.self) }) else { break }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        throw EngineError.invalidArgument("system prompt file not found: \(ref)")
    }
}
