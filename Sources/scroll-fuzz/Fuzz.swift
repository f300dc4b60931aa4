import Engine
import Foundation

/// Fuzz targets for the readers of files Scroll is handed: GGUF models (`gguf`: read, checked,
/// loaded and run for one token, with its vocabulary) and session files (`session`: loaded
/// against the tiny reference model). `scripts/fuzz.sh` builds this with libFuzzer
/// (`-sanitize=fuzzer,address -DFUZZING`), whose driver hands each input to `Harness.run`; a
/// crash, trap, out-of-bounds access or hang is a finding. Built normally, the same
/// code replays files named on the command line (a finding's input, kept as a regression
/// case), and `seed DIR` writes the starting corpora.
enum Harness {
    /// `SCROLL_FUZZ`: which reader this process fuzzes.
    static let target = ProcessInfo.processInfo.environment["SCROLL_FUZZ"] ?? "gguf"
    /// The model sessions are loaded against: `SCROLL_FUZZ_MODEL`, else the tiny reference model.
    static let modelPath = ProcessInfo.processInfo.environment["SCROLL_FUZZ_MODEL"] ?? "Tests/EngineTests/Reference/tiny/tiny-llama.gguf"
    static let input = NSTemporaryDirectory() + "scroll-fuzz-\(getpid())"
    nonisolated(unsafe) static var model: (Transformer, Tokenizer)?

    /// The cache a seed session is saved with: small, so that inputs stay small, with a
    /// wrapped window, finished memory blocks and a block being filled.
    static func makeCache(_ model: Transformer) -> KVCache {
        var m = MemorySettings()
        m.blockSize = 16
        m.topBlocks = 2
        return model.makeCache(policy: CachePolicy(sinks: 4, window: 32), memory: m)
    }

    static func loadedModel() throws -> (Transformer, Tokenizer) {
        if let model { return model }
        let gguf = try GGUFFile(path: modelPath)
        let loaded = (try Transformer(gguf: gguf), try Tokenizer(gguf: gguf))
        model = loaded
        return loaded
    }

    /// Reads `bytes` as the target's file; errors are the expected outcome, only a crash counts.
    static func run(_ bytes: Data) {
        guard FileManager.default.createFile(atPath: input, contents: bytes) else { fatalError("cannot write \(input)") }
        do {
            switch target {
            case "session":
                let (model, tokenizer) = try loadedModel()
                let contents = try SessionFile.load(from: input, model: model, tokenizer: tokenizer, freshCache: makeCache(model))
                let g = Generator(model: model, tokenizer: tokenizer, sampler: contents.conversation.restoredSampler, cache: contents.cache)
                g.restore(cache: contents.cache, history: contents.history, logits: contents.logits, sampler: contents.conversation.restoredSampler)
                g.generate(maxTokens: 2)
            default:
                let gguf = try GGUFFile(path: input)
                let model = try Transformer(gguf: gguf, maxPositions: 64)
                let tokenizer = try Tokenizer(gguf: gguf)
                let ids = tokenizer.encode("Hello, world")
                if let first = ids.first, first < model.config.vocabSize {
                    _ = model.forward(token: first, cache: model.makeCache(capacity: 8))
                }
            }
        } catch {}
    }

    /// Writes starting corpora: DIR/gguf (the tiny model) and DIR/session (a session of it
    /// saved whole, and one with a frame appended).
    static func seed(_ directory: String) throws {
        for sub in ["gguf", "session"] { try FileManager.default.createDirectory(atPath: directory + "/" + sub, withIntermediateDirectories: true) }
        try? FileManager.default.removeItem(atPath: directory + "/gguf/tiny.gguf")
        try FileManager.default.copyItem(atPath: modelPath, toPath: directory + "/gguf/tiny.gguf")
        let (model, tokenizer) = try loadedModel()
        let g = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: SamplerSettings()), cache: makeCache(model))
        try g.feed(tokenizer.encode(String(repeating: "The keeper counted the ships that passed the rocks. ", count: 6)))
        g.generate(maxTokens: 4)
        let conversation = SessionConversation(messages: [ChatMessage(role: .user, content: "Who counted the ships?")], systemPrompt: nil,
                                               raw: false, sampler: g.sampler)
        let whole = directory + "/session/whole", appended = directory + "/session/appended"
        try SessionFile.save(to: whole, generator: g, conversation: conversation, modelName: "tiny")
        let first = try SessionFile.save(to: appended, generator: g, conversation: conversation, modelName: "tiny")
        try g.feed(tokenizer.encode(" And the lighthouse?"))
        g.generate(maxTokens: 4)
        try SessionFile.save(to: appended, generator: g, conversation: conversation, modelName: "tiny", after: first)
    }
}

#if FUZZING
/// What libFuzzer calls with each input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    Harness.run(size == 0 ? Data() : Data(bytes: data!, count: size))
    return 0
}

/// libFuzzer's entry for a program that has its own main (FuzzerDriver.cpp).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt
#endif

@main
struct Replay {
    static func main() throws {
        #if FUZZING
        // SwiftPM links the executable's main under its own name, so libFuzzer's main is not
        // used: it is started here, with each input handed to Harness.run.
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { fuzzOne($0, $1) })
        #else
        let args = Array(CommandLine.arguments.dropFirst())
        if args.first == "seed", args.count == 2 { return try Harness.seed(args[1]) }
        guard !args.isEmpty else {
            print("usage: SCROLL_FUZZ=gguf|session scroll-fuzz FILE...   (replays inputs)\n       scroll-fuzz seed DIR   (writes starting corpora)")
            return
        }
        for path in args { Harness.run(try Data(contentsOf: URL(fileURLWithPath: path))) }
        print("replayed \(args.count) input(s) through the \(Harness.target) reader: no crash")
        #endif
    }
}
