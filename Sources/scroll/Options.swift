import ArgumentParser
import Engine
import Foundation

/// Options every command that loads a model shares.
struct ModelOptions: ParsableArguments {
    @Option(name: [.short, .long], help: "A GGUF model: a path, or a name that `scroll models` lists (default: models/\(ModelLocator.defaultFileName)).")
    var model: String?

    @Option(name: .long, parsing: .unconditional, help: "Worker threads for the matrix kernels (default: number of cores).")
    var threads: Int?

    @Flag(name: .long, help: "Exact float arithmetic: weights dequantized on the fly, activations never quantized to 8 bits (slower; the reference the fast path is tested against).")
    var exact = false

    @Option(name: .customLong("rope-scaling"), help: "RoPE scaling: none, linear or yarn (default: the model file's; yarn is chosen by itself when --sinks + --window exceed the trained context).")
    var ropeScaling: RopeScaling.Kind?
    @Option(name: .customLong("rope-scale"), parsing: .unconditional, help: "RoPE scaling factor s (default: the file's, or window over trained context). Alone it means yarn.")
    var ropeScale: Double?
    @Option(name: .customLong("yarn-orig-ctx"), parsing: .unconditional, help: "YaRN/linear: the original context (default: the file's, else its trained context).")
    var yarnOrigCtx: Int?
    @Option(name: .customLong("yarn-beta-fast"), parsing: .unconditional, help: "YaRN: dimensions turning at least this often keep their frequency.")
    var yarnBetaFast: Double = 32
    @Option(name: .customLong("yarn-beta-slow"), parsing: .unconditional, help: "YaRN: dimensions turning at most this often are interpolated.")
    var yarnBetaSlow: Double = 1
    @Option(name: .customLong("yarn-ext-factor"), parsing: .unconditional, help: "YaRN: weight of the extrapolation ramp (default: 1 with yarn, 0 otherwise).")
    var yarnExtFactor: Double?
    @Option(name: .customLong("yarn-attn-factor"), parsing: .unconditional, help: "YaRN: factor on mscale.")
    var yarnAttnFactor: Double = 1

    func validate() throws {
        if let t = threads, t < 1 || t > 256 { throw ValidationError("--threads must be between 1 and 256") }
        if let s = ropeScale, !(s >= 1 && s <= 1024) { throw ValidationError("--rope-scale must be between 1 and 1024") }
        if let n = yarnOrigCtx, !(1...ModelConfig.maxContext).contains(n) { throw ValidationError("--yarn-orig-ctx must be from 1 to \(ModelConfig.maxContext)") }
        guard yarnBetaFast > 0, yarnBetaSlow > 0, yarnBetaFast > yarnBetaSlow else {
            throw ValidationError("--yarn-beta-fast must be greater than --yarn-beta-slow, both above 0")
        }
        if let e = yarnExtFactor, !(e >= 0 && e <= 1) { throw ValidationError("--yarn-ext-factor must be between 0 and 1") }
        guard yarnAttnFactor > 0 else { throw ValidationError("--yarn-attn-factor must be above 0") }
    }

    func modelPath() throws -> String { try model.map(ModelLocator.resolve) ?? ModelLocator.defaultModelPath() }
    var threadCount: Int { threads ?? ProcessInfo.processInfo.activeProcessorCount }

    /// Loads the model with RoPE set up for a cache of `cacheCapacity` tokens (nil: dense,
    /// the trained or scaled context).
    func load(cacheCapacity: Int? = nil) throws -> (Transformer, Tokenizer) {
        let gguf = try GGUFFile(path: try modelPath())
        let config = try ModelConfig(gguf: gguf)
        let scaling = ropeScaling(config: config, cacheCapacity: cacheCapacity)
        let positions = max(config.contextLength, scaling.scaledContext, cacheCapacity ?? 0)
        var plan = MemoryPlan()
        Transformer.plan(config: config, positions: positions, threads: threadCount, fileBytes: gguf.fileBytes, into: &plan)
        try plan.check()
        let transformer = try Transformer(gguf: gguf, threads: threadCount, maxPositions: positions, ropeScaling: scaling)
        transformer.fastPath = !exact
        let tokenizer = try Tokenizer(gguf: gguf)
        return (transformer, tokenizer)
    }

    /// Flags first, then the file's own scaling; with neither and a cache longer than the
    /// trained context, YaRN with the factor that covers the cache (said once on stderr).
    func ropeScaling(config: ModelConfig, cacheCapacity: Int?) -> RopeScaling {
        var s = RopeScaling(config: config)
        let original = yarnOrigCtx ?? s.originalContext
        let covering = max(1, Double(cacheCapacity ?? 0) / Double(original))
        if let kind = ropeScaling {
            s = RopeScaling(kind: kind, factor: kind == .none ? 1 : ropeScale ?? covering, originalContext: original)
        } else if let factor = ropeScale {
            s = RopeScaling(kind: s.kind == .none ? .yarn : s.kind, factor: factor, originalContext: original)
        } else if s.kind == .none, let needed = cacheCapacity, needed > config.contextLength {
            s = RopeScaling(kind: .yarn, factor: covering, originalContext: original)
            Terminal.note(String(format: "scroll: a cache of %d tokens is beyond the model's trained context of %d: using YaRN RoPE scaling ×%.3g (--rope-scaling none to turn it off)",
                                 needed, config.contextLength, covering))
        }
        s.betaFast = yarnBetaFast
        s.betaSlow = yarnBetaSlow
        s.extFactor = yarnExtFactor
        s.attnFactor = yarnAttnFactor
        return s
    }
}

extension RopeScaling.Kind: ExpressibleByArgument {}

/// The cache policy: attention sinks + sliding window (StreamingLLM), or dense.
extension KVPrecision: ExpressibleByArgument {}
extension MemoryPositions: ExpressibleByArgument {}

struct CacheOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Attention-sink tokens kept forever at the start of the cache.")
    var sinks = CachePolicy.defaultSinks
    // Two defaults. A chat: 1024, not the 2048 that would fit the trained context: recalled
    // blocks sit beyond the window, and this 135M model uses a passage only when it is near
    // the question (passkey at 8K with the memory: 20/20 with 1024, 8/10 with 2048); 1024
    // predicts text better than 512 (ppl with the memory 11.56 against 11.90). Questions about
    // a document (piped, `scroll needle`, `scroll passkey`): 512, where less filler in view
    // made answers surer (passkey 32K: 20/20 against 18/20 with 1024, the misses needles
    // right before the question; natural-text facts level: 34/40 against 33/40 at 8K and 32K).
    // docs/benchmarks.md. Saved sessions name their window, so old ones resume as they were.
    @Option(parsing: .unconditional, help: "Most recent tokens kept in the sliding window (default: \(CacheOptions.chatWindow); \(CacheOptions.documentWindow) for questions about a piped document, and in needle and passkey).")
    var window: Int?
    static let chatWindow = 1024, documentWindow = 512

    /// The window: the one given, else the default for a chat or for questions about a
    /// document, never shorter than what `model`'s local layers attend to.
    func windowSize(document: Bool, model: Transformer? = nil) -> Int {
        window ?? max(document ? Self.documentWindow : Self.chatWindow, model?.config.localWindow ?? 0)
    }
    @Flag(help: "Plain dense attention up to the model's trained (or RoPE-scaled) context (no eviction; a full context is an error).")
    var dense = false
    @Option(name: .customLong("kv"), help: "KV cache storage: f32, or int8 (per-32 scales; 3.6x smaller).")
    var kvPrecision: KVPrecision = .f32
    @Flag(inversion: .prefixedNo, help: "Block memory: keep tokens leaving the window and attend to the most relevant blocks again.")
    var memory = true
    @Flag(inversion: .prefixedNo, help: "Memory: before each question, read again the evicted passages it names (by their words), right before it.")
    var reread = true
    @Option(parsing: .unconditional, help: "Memory: evicted tokens per block.")
    var blockSize = 64
    @Option(parsing: .unconditional, help: "Memory: blocks recalled per layer and KV head.")
    var topBlocks = 8
    @Option(parsing: .unconditional, help: "Memory: a block's representative is the mean of its this many most attended keys (0: of all its keys).")
    var representativeKeys = MemorySettings().representativeKeys
    @Option(help: "Memory: RAM for block contents (e.g. 512M, 2G); the rest goes to a temporary file.")
    var memoryBudget = "1G"
    @Option(help: "Memory: where recalled tokens sit, 'chronological' (in stream order just beyond the window) or 'same' (all at one distance).")
    var memoryPositions = MemoryPositions.chronological

    func validate() throws {
        // Bounded so that sums and products of them cannot overflow; what the machine can
        // hold is checked against memory when the cache is made (MemoryPlan).
        guard (0...ModelConfig.maxContext).contains(sinks) else { throw ValidationError("--sinks must be from 0 to \(ModelConfig.maxContext)") }
        guard (1...ModelConfig.maxContext).contains(windowSize(document: false)) else { throw ValidationError("--window must be from 1 to \(ModelConfig.maxContext)") }
        guard (1...4096).contains(blockSize) else { throw ValidationError("--block-size must be from 1 to 4096") }
        guard (0...1024).contains(topBlocks) else { throw ValidationError("--top-blocks must be from 0 to 1024") }
        guard representativeKeys >= 0 else { throw ValidationError("--representative-keys must be 0 or more") }
        guard Self.bytes(memoryBudget) != nil else { throw ValidationError("--memory-budget takes a size like 512M or 2G (got \(memoryBudget))") }
    }

    /// "512M" → 536870912: a byte count with an optional K, M, G or T suffix (powers of 1024).
    static func bytes(_ text: String) -> Int? {
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = text.uppercased()
        if digits.hasSuffix("IB") { digits.removeLast(2) } else if digits.hasSuffix("B") { digits.removeLast() }
        var unit = 1
        if let last = digits.last, let u = units[last] { unit = u; digits.removeLast() }
        guard let value = Double(digits), value >= 0, value * Double(unit) < 1e18 else { return nil }
        return Int(value * Double(unit))
    }

    /// The block memory these flags ask for: nil when off, or with --dense (nothing is evicted).
    var memorySettings: MemorySettings? {
        guard memory, !dense else { return nil }
        var m = MemorySettings()
        m.blockSize = blockSize
        m.topBlocks = topBlocks
        m.representativeKeys = representativeKeys
        m.ramBudget = Self.bytes(memoryBudget) ?? m.ramBudget
        m.positions = memoryPositions
        return m
    }

    /// A cache for `model` as these flags describe it; `document`: for questions about a
    /// document (its default window).
    func makeCache(for model: Transformer, document: Bool = false) throws -> KVCache {
        let policy = try policy(for: model, document: document)
        var plan = MemoryPlan()
        model.plan(into: &plan)
        KVCache.plan(config: model.config, policy: policy, precision: kvPrecision, memory: memorySettings, into: &plan)
        try plan.check()
        return model.makeCache(policy: policy, precision: kvPrecision, memory: memorySettings)
    }

    /// The capacity RoPE must cover: sinks + window, or nil for dense.
    func requestedCapacity(document: Bool = false) -> Int? { dense ? nil : sinks + windowSize(document: document) }

    func policy(for model: Transformer, document: Bool = false) throws -> CachePolicy {
        let limit = model.maxPositions, window = windowSize(document: document, model: model)
        if dense { return .dense(limit) }
        guard sinks + window <= limit else {
            throw EngineError.invalidArgument("--sinks + --window (\(sinks + window)) exceeds the \(limit) positions RoPE is set up for")
        }
        if let local = model.config.localWindow, window < local {
            throw EngineError.invalidArgument("--window \(window) is shorter than the \(local) positions this model's local layers attend to (use --window \(local) or more)")
        }
        return CachePolicy(sinks: sinks, window: window)
    }

    /// The flags that rebuild `cache` and `rope` (saved with a session, taken on resume).
    static func flags(for cache: KVCache, rope: RopeScaling) -> [String] {
        var f = cache.policy.window.map { ["--sinks", "\(cache.policy.sinks)", "--window", "\($0)"] } ?? ["--dense"]
        f += ["--kv", cache.precision.rawValue]
        if let m = cache.memory?.settings {
            f += ["--memory", "--block-size", "\(m.blockSize)", "--top-blocks", "\(m.topBlocks)",
                  "--representative-keys", "\(m.representativeKeys)", "--memory-positions", m.positions.rawValue]
        } else {
            f += ["--no-memory"]
        }
        f += ["--rope-scaling", rope.kind.rawValue, "--rope-scale", "\(rope.factor)", "--yarn-orig-ctx", "\(rope.originalContext)",
              "--yarn-beta-fast", "\(rope.betaFast)", "--yarn-beta-slow", "\(rope.betaSlow)", "--yarn-attn-factor", "\(rope.attnFactor)"]
        if let e = rope.extFactor { f += ["--yarn-ext-factor", "\(e)"] }
        return f
    }

    /// The cache these flags describe, e.g. "sinks 4 + window 2048, KV int8 (12.7 KiB/token)".
    static func describe(_ cache: KVCache) -> String {
        let policy = cache.policy.window.map { "sinks \(cache.policy.sinks) + window \($0)" } ?? "dense \(cache.capacity)"
        let memory = cache.memory.map { ", memory: blocks of \($0.settings.blockSize), top \($0.settings.topBlocks)" } ?? ""
        return policy + String(format: ", KV %@ (%.1f KiB/token, %.0f MiB)", cache.precision.rawValue,
                               Double(cache.bytesPerToken) / 1024, Double(cache.bytes) / 1_048_576) + memory
    }
}

/// Sampling flags (llama.cpp's names and defaults). Each is optional so that a resumed
/// session keeps its own settings except those given on the command line.
struct SamplingOptions: ParsableArguments {
    @Option(name: [.customShort("n"), .customLong("max-tokens")], parsing: .unconditional, help: "Most tokens to generate per reply.")
    var maxTokens: Int = 512
    @Option(name: .customLong("temp"), parsing: .unconditional, help: "Temperature; 0 is greedy (default: 0.8).")
    var temperature: Float?
    @Option(name: .customLong("top-k"), parsing: .unconditional, help: "Keep the k most likely tokens; 0: off (default: 40).")
    var topK: Int?
    @Option(name: .customLong("top-p"), parsing: .unconditional, help: "Keep the smallest set with this much probability; 1: off (default: 0.95).")
    var topP: Float?
    @Option(name: .customLong("min-p"), parsing: .unconditional, help: "Drop tokens below this fraction of the top probability; 0: off (default: 0.05).")
    var minP: Float?
    @Option(name: .customLong("repeat-penalty"), parsing: .unconditional, help: "Penalty for tokens the reply has used among its last --repeat-last-n (not the prompt's); 1: off (default: 1.1).")
    var repeatPenalty: Float?
    @Option(name: .customLong("repeat-last-n"), parsing: .unconditional, help: "How many of the reply's recent tokens the repeat penalty looks at (default: 256).")
    var repeatLastN: Int?
    @Option(name: .long, help: "Random seed; the same seed reproduces a reply (default: random).")
    var seed: UInt64?

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be 0 or more") }
        if let problem = settings.problem { throw ValidationError("--" + problem) }
    }

    /// The settings for a new conversation: the flags given, defaults for the rest.
    var settings: SamplerSettings {
        var s = overriding(SamplerSettings())
        if seed == nil { s.seed = UInt64.random(in: 0...UInt64.max) }
        return s
    }

    /// `base` (a resumed session's settings) with the flags that were given.
    func overriding(_ base: SamplerSettings) -> SamplerSettings {
        var s = base
        if let v = temperature { s.temperature = v }
        if let v = topK { s.topK = v }
        if let v = topP { s.topP = v }
        if let v = minP { s.minP = v }
        if let v = repeatPenalty { s.repeatPenalty = v }
        if let v = repeatLastN { s.repeatLastN = v }
        if let v = seed { s.seed = v }
        return s
    }
}

/// Which session a chat is kept in, and how.
struct SessionOptions: ParsableArguments {
    @Option(help: "Resume or start the session NAME (in sessions/, or $SCROLL_SESSIONS): it is saved after each reply and on exit.")
    var session: String?
    @Option(name: .customLong("session-kv"), help: "How sessions store the KV cache: int8 (about 38% of an f16 state) or lossless (exact resume).")
    var sessionKV: SessionFile.KVEncoding = .int8

    func validate() throws {
        if let session { do { try SessionStore.validate(session) } catch { throw ValidationError("\(error)") } }
    }
}

/// What the conversation starts with.
struct PromptOptions: ParsableArguments {
    @Option(name: .long, help: "System prompt: text, @NAME (NAME.txt in ~/.config/scroll/prompts or the installed prompts/), or @PATH/FILE.")
    var system: String?

    @Flag(name: .long, help: "No chat template: the input is fed to the model as plain text.")
    var raw = false

    @Option(name: .long, help: "The chat format, when the model's own is not recognised: chatml, llama3, gemma or mistral (default: the model's).")
    var template: ChatTemplate.Format?

    /// The system prompt text: nil means the model's default.
    func systemPrompt() throws -> String? {
        guard let s = system else { return nil }
        guard s.hasPrefix("@") else { return s }
        return try PromptLibrary.load(String(s.dropFirst()))
    }
}

/// System prompts as plain text files, by name: NAME.txt in the user's folder
/// (`$XDG_CONFIG_HOME/scroll/prompts`, else `~/.config/scroll/prompts`), then in the installed
/// `prompts/` (beside the `models/` the default model was found in). A reference with a slash
/// is a file path. Never the working directory: `--system @concise` failed outside the
/// repository, and Tab after `/system @` listed whatever folder Scroll was started in.
enum PromptLibrary {
    static var folders: [String] {
        let env = ProcessInfo.processInfo.environment
        let config = env["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.config")
        return [config + "/scroll/prompts", ModelLocator.installRoot + "/prompts"]
    }

    static func load(_ ref: String) throws -> String {
        let candidates = ref.contains("/") ? [(ref as NSString).expandingTildeInPath]
            : folders.map { $0 + "/" + (ref.hasSuffix(".txt") ? ref : ref + ".txt") }
        for path in candidates {
            var st = stat()
            guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size <= 1 << 20,
                  let data = FileManager.default.contents(atPath: path) else { continue }
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        throw EngineError.invalidArgument("system prompt not found: \(ref) (looked in \(ref.contains("/") ? candidates[0] : folders.joined(separator: " and ")))")
    }

    /// The names `@NAME` can take, for completion.
    static func names() -> [String] {
        Array(Set(folders.flatMap { folder in
            ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".txt") }.map { ($0 as NSString).deletingPathExtension }
        })).sorted()
    }
}

extension ChatTemplate.Format: ExpressibleByArgument {}
