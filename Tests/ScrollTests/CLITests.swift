import Foundation
import XCTest

/// The `scroll` executable, run as a user runs it: real model, real process, real pipes.
final class CLITests: XCTestCase {
    static var repoRoot: URL { ScrollProcess.repoRoot }

    /// DESIGN.md's golden answer on the exact float path. (The int8 fast path, like
    /// llama.cpp's, picks 'L' over 'The' here: their logits differ by 0.08.)
    func testOneShotGoldenAnswer() throws {
        let r = try run(["--exact", "--temp", "0", "What is the capital of France?"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "The capital of France is Paris.\n")
    }

    /// `scroll tokenize` prints ids as `llama-tokenize --ids --no-parse-special --no-escape`
    /// does; the ids are llama.cpp's (0c1e570) for the same text, control-token text included.
    func testTokenizePrintsLlamaCppsIds() throws {
        let r = try run(["tokenize", "Hello world, 12345 <|im_end|> 東京"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "[19556, 905, 28, 216, 33, 34, 35, 36, 37, 2067, 108, 306, 79, 486, 108, 46, 17097, 247, 126, 16736, 122]\n")
    }

    /// `scroll models` lists what `-m NAME` finds: the installed models/ and $SCROLL_MODELS,
    /// a file that is not a model named as such; a name that matches nothing says where it looked.
    func testModelsAndNames() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-models-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.createSymbolicLink(at: folder.appendingPathComponent("mine.gguf"),
                                                   withDestinationURL: ScrollProcess.repoRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        try Data("GGUFjunk".utf8).write(to: folder.appendingPathComponent("broken.gguf"))
        let env = ["SCROLL_MODELS": folder.path]
        let list = try run(["models"], environment: env)
        XCTAssertEqual(list.status, 0, list.stderr)
        let lines = list.stdout.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines.contains { $0.hasPrefix("mine ") && $0.contains("llama") && $0.contains("135M") && $0.contains("8192") && $0.contains("Q4_1 79%") }, list.stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("SmolLM2-135M-Instruct.Q4_1 ") }, list.stdout)
        XCTAssertTrue(lines.contains { $0.hasPrefix("broken ") && $0.contains("not a model") }, list.stdout)
        XCTAssertEqual(try run(["tokenize", "-m", "mine", "Hello world"], environment: env).stdout, "[19556, 905]\n")
        let missing = try run(["tokenize", "-m", "nosuch", "Hello"], environment: env)
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.hasPrefix("scroll: error: no model nosuch:") && missing.stderr.contains("scroll models lists them"), missing.stderr)
    }

    /// A model without ChatML tokens (a base model; here the synthetic tiny llama) continues
    /// the text as --raw does, with one line saying so; it was refused ("use --raw").
    func testModelWithoutTemplateCompletesText() throws {
        let tiny = ScrollProcess.repoRoot.appendingPathComponent("Tests/EngineTests/Reference/tiny/tiny-llama.gguf").path
        let r = try run(["-m", tiny, "-n", "4", "--temp", "0", "--window", "256", "Once upon a time"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("tiny-llama.gguf has no chat template Scroll knows (chatml, llama3, gemma, mistral): it continues the text, as with --raw"), r.stderr)
        XCTAssertFalse(r.stdout.isEmpty)
    }

    func testMaxTokensAndSeedReproducibility() throws {
        let args = ["--seed", "7", "--temp", "1", "-n", "8", "Tell me a story."]
        let a = try run(args), b = try run(args)
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertEqual(a.stdout, b.stdout)
        XCTAssertFalse(a.stdout.isEmpty)
    }

    func testRawModeAndPipedDocument() throws {
        let raw = try run(["--raw", "--temp", "0", "-n", "3", "The quick brown fox jumps over the lazy"])
        XCTAssertEqual(raw.status, 0, raw.stderr)
        XCTAssertTrue(raw.stdout.lowercased().contains("dog"), raw.stdout)
        let doc = "Notes from the meeting. The secret code word is PELICAN. Everything else was routine.\n"
        let piped = try run(["--temp", "0", "-n", "30", "What is the secret code word?"], stdin: Data(doc.utf8))
        XCTAssertEqual(piped.status, 0, piped.stderr)
        XCTAssertTrue(piped.stdout.uppercased().contains("PELICAN"), piped.stdout)
    }

    /// A document longer than the cache streams through it (no error, no silent truncation:
    /// stderr says once how it was held) and the answer still comes on stdout alone.
    func testDocumentLongerThanTheWindow() throws {
        let doc = String(repeating: "The grass is green. The sky is blue. The sun is yellow. ", count: 40)
        let r = try run(["--window", "128", "--temp", "0", "-n", "8", "What color is the sky?"], stdin: Data(doc.utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("longer than the window"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(r.stdout.isEmpty)
    }

    /// A fact at the start of a piped document six windows long: block memory recalls it
    /// (stdout holds only the answer); with --no-memory the model no longer sees it.
    func testEarlyFactRecalledFromMemory() throws {
        let filler = Array(repeating: "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.", count: 30)
        // Four filler lines first: the fact lies beyond any sinks (up to 64) and must come from the memory.
        let doc = filler.prefix(4).joined(separator: " ") + " Notes from the meeting. The secret code word is PELICAN. Everything else was routine. "
            + filler.joined(separator: " ") + "\n"
        let question = "What is the secret code word?"
        let memory = try run(["--window", "128", "--temp", "0", "-n", "20", question], stdin: Data(doc.utf8))
        XCTAssertEqual(memory.status, 0, memory.stderr)
        XCTAssertTrue(memory.stdout.contains("PELICAN"), memory.stdout)
        XCTAssertTrue(memory.stderr.contains("block memory"), memory.stderr)
        let forgetful = try run(["--window", "128", "--no-memory", "--temp", "0", "-n", "20", question], stdin: Data(doc.utf8))
        XCTAssertEqual(forgetful.status, 0, forgetful.stderr)
        XCTAssertFalse(forgetful.stdout.contains("PELICAN"), forgetful.stdout)
    }

    /// The block memory's file cannot be made (TMPDIR names no folder) and its RAM budget is
    /// small: one line says so before the document is read; the answer still comes.
    func testMemoryFileFailureIsSaidOnce() throws {
        guard let gpl = FileManager.default.contents(atPath: "/usr/share/common-licenses/GPL-3") else {
            throw XCTSkip("/usr/share/common-licenses/GPL-3 is missing")
        }
        let r = try run(["--memory-budget", "1M", "--window", "256", "--temp", "0", "-n", "4", "What is this?"], stdin: gpl.prefix(8000),
                        environment: ["TMPDIR": "/nonexistent-scroll-folder"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stdout.isEmpty)
        let lines = r.stderr.split(separator: "\n").filter { $0.contains("block memory: cannot create /nonexistent-scroll-folder/") }
        XCTAssertEqual(lines.count, 1, r.stderr)
        // Said before the document is read, not once the budget has filled.
        XCTAssertTrue(r.stderr.hasPrefix("scroll: block memory: cannot create"), r.stderr)
    }

    /// A made-up fact in real prose (the start of the GPL, ~2.3K tokens), ~1.7K tokens before
    /// the question and so evicted from the default window: found by the question's words and
    /// read again right before it, the answer is right; without the memory it is not.
    func testFactInProseIsReadAgainBeforeTheQuestion() throws {
        guard let gpl = FileManager.default.contents(atPath: "/usr/share/common-licenses/GPL-3") else {
            throw XCTSkip("/usr/share/common-licenses/GPL-3 is missing")
        }
        let paragraphs = String(decoding: gpl, as: UTF8.self).components(separatedBy: "\n\n").prefix(40)
        let fact = "The secret code of the amber gate is 58213."
        let doc = (paragraphs.prefix(10) + [fact] + paragraphs.dropFirst(10)).joined(separator: "\n\n")
        let question = "What is the secret code of the amber gate?"
        let r = try run(["--temp", "0", "-n", "24", question], stdin: Data(doc.utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("58213"), r.stdout)
        let forgetful = try run(["--no-memory", "--temp", "0", "-n", "24", question], stdin: Data(doc.utf8))
        XCTAssertEqual(forgetful.status, 0, forgetful.stderr)
        XCTAssertFalse(forgetful.stdout.contains("58213"), forgetful.stdout)
    }

    /// `scroll needle` on real prose: one case, its fact evicted from a small window, reported
    /// as JSON with the fact, the reply, where the fact ranked by the question's words, and
    /// whether the fact alone was answered.
    func testNeedleReportsEachCase() throws {
        let path = "/usr/share/common-licenses/GPL-3"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is missing") }
        let r = try run(["needle", "--haystack", path, "--tokens", "1024", "--cases", "1", "--window", "256", "-n", "16", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let cases = report?["cases"] as? [[String: Any]] ?? []
        XCTAssertEqual(cases.count, 1, r.stdout)
        XCTAssertEqual(cases.first?["evicted"] as? Bool, true, r.stdout)
        XCTAssertEqual(cases.first?["wordRank"] as? Int, 1, r.stdout)
        XCTAssertNotNil(cases.first?["answeredAlone"] as? Bool, "the fact alone asked too: \(r.stdout)")
        XCTAssertNotEqual(try run(["needle", "--tokens", "1024"]).status, 0)
    }

    /// `scroll --help` lists every option of the default command (what `scroll "question"`
    /// and the REPL take) and every subcommand, one entry each.
    func testHelpListsEveryOptionAndSubcommand() throws {
        let help = try run(["--help"])
        XCTAssertEqual(help.status, 0, help.stderr)
        let chat = try run(["help", "chat"])
        let options = chat.stdout.split(separator: "\n").compactMap { line -> String? in
            let t = line.trimmingCharacters(in: .whitespaces)
            guard t.hasPrefix("-") else { return nil }
            return t.split(separator: " ").first { $0.hasPrefix("--") }.map(String.init)
        }
        XCTAssertGreaterThan(options.count, 30, chat.stdout)
        for name in options + ["--window", "--sinks", "--memory", "--session", "--temp", "--system", "--kv", "--rope-scaling"] {
            XCTAssertTrue(help.stdout.contains(name), "\(name) missing from scroll --help")
        }
        // Grouped, what a chat needs most first, and the environment listed.
        let groups = ["CONVERSATION:", "SAMPLING:", "SESSIONS:", "CACHE AND BLOCK MEMORY:", "MODEL AND ROPE SCALING:", "ENVIRONMENT:"]
        let at = groups.compactMap { help.stdout.range(of: $0)?.lowerBound }
        XCTAssertEqual(at.count, groups.count, help.stdout)
        XCTAssertEqual(at, at.sorted(), "groups in order")
        XCTAssertTrue(help.stdout.contains("SCROLL_SESSIONS"), help.stdout)
        for sub in ["chat", "sessions", "bench", "ppl", "passkey"] {
            XCTAssertTrue(help.stdout.contains("\n  \(sub) "), "\(sub) missing from scroll --help")
        }
    }

    /// Ctrl-C while a long piped document is read stops the reading within a piece (not at
    /// the end of the document): one line on stderr says how much was read, nothing on
    /// stdout, exit status 130, and a named session keeps its last save.
    func testCtrlCWhileReadingAPipedDocument() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-ctrlc-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // ~60,000 tokens: minutes of reading in a debug build, so the SIGINT lands mid-read.
        let doc = String(repeating: "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.\n", count: 3000)
        let r = try run(["--window", "256", "--no-memory", "--session", "doc", "What color is the sky?"], stdin: Data(doc.utf8),
                        environment: ["SCROLL_SESSIONS": folder], interruptAfter: 2)
        XCTAssertEqual(r.status, 130, r.stderr)
        XCTAssertEqual(r.stdout, "")
        let line = r.stderr.split(separator: "\n").last.map(String.init) ?? ""
        let counts = line.split(separator: " ").compactMap { Int($0) }
        XCTAssertTrue(line.hasPrefix("scroll: stopped after reading ") && line.hasSuffix("session doc was not saved"), r.stderr)
        XCTAssertEqual(counts.count, 2, line)
        if counts.count == 2 { XCTAssertLessThan(counts[0], counts[1] / 2, "reading went on after Ctrl-C: \(line)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/doc"), "a half-read session was saved")
    }

    /// `scroll passkey` end to end, with a window beyond the trained context: YaRN is chosen
    /// by itself (said once on stderr) and the key 400 tokens back is still found.
    func testPasskeyWithAutomaticYaRN() throws {
        let r = try run(["passkey", "--tokens", "400", "--depth", "0.5", "--sinks", "4", "--window", "9000", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: "using YaRN RoPE scaling").count, 2, r.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        XCTAssertTrue((report["cache"] as? String ?? "").contains("YaRN"), r.stdout)
        let cells = try XCTUnwrap(report["cells"] as? [[String: Any]])
        XCTAssertEqual(cells.first?["accuracy"] as? Double, 1, r.stdout)
        let bad = try run(["passkey", "--tokens", "9000", "--dense"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("does not fit"), bad.stderr)
    }

    /// `--key` replays given keys instead of drawing random ones: one trial per key.
    func testPasskeyReplaysGivenKeys() throws {
        let r = try run(["passkey", "--tokens", "300", "--depth", "0.5", "--key", "31337", "4242", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let trials = try XCTUnwrap(report["trials"] as? [[String: Any]])
        XCTAssertEqual(trials.compactMap { $0["key"] as? Int }, [31337, 4242], r.stdout)
        XCTAssertNotEqual(try run(["passkey", "--key", "-3"]).status, 0)
    }

    func testBinaryGarbageOnStdinDoesNotCrash() throws {
        var bytes = [UInt8](repeating: 0, count: 600)
        var x: UInt32 = 12345
        for i in bytes.indices { x = x &* 1_103_515_245 &+ 12345; bytes[i] = UInt8(truncatingIfNeeded: x >> 16) }
        let r = try run(["--temp", "0", "-n", "4", "What is this?"], stdin: Data(bytes))
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("binary data"), r.stderr)
        XCTAssertTrue(r.stdout.isEmpty)
        // Text with a few bytes that are not UTF-8 (a Latin-1 é) is read, not refused.
        var latin1 = Data("Caf".utf8) + Data([0xE9]) + Data(" menu: soup, bread, and tea. The soup is tomato.\n".utf8)
        latin1 += Data(repeating: 0x20, count: 1)
        let text = try run(["--temp", "0", "-n", "8", "What soup is it?"], stdin: latin1)
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertFalse(text.stdout.isEmpty)
    }

    func testErrorsAreOneLineAndNonZero() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-cli-\(UUID().uuidString)")
        try Data("not a model".utf8).write(to: scratch)
        let model = Self.repoRoot.appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        let truncated = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-cut-\(UUID().uuidString).gguf")
        try Data(contentsOf: model).prefix(5_000_000).write(to: truncated)
        addTeardownBlock {
            try? FileManager.default.removeItem(at: scratch)
            try? FileManager.default.removeItem(at: truncated)
        }
        for (args, expected) in [
            (["-m", "/nonexistent/x.gguf", "hi"], "model file not found"),
            (["-m", scratch.path, "hi"], "not a GGUF file"),
            (["-m", truncated.path, "hi"], "truncated GGUF file"),
            (["--system", "@no-such-prompt", "hi"], "system prompt not found: no-such-prompt"),
        ] {
            let r = try run(args)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(expected), "\(args): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
            XCTAssertEqual(r.stdout, "")
        }
        let bad = try run(["--top-p", "3", "hi"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--top-p"), bad.stderr)
    }

    /// The adversarial pass's reproducers through the binary: flags that overflowed, trapped
    /// or ran the machine out of memory, a FIFO as the model or the session, and a model
    /// whose metadata holds escape sequences and a NUL. Each ends in one line (flag errors keep
    /// ArgumentParser's usage line) with a status below 128, and nothing reaches the terminal raw.
    func testHostileFlagsAndFilesEndInOneLine() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-hostile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: scratch) }
        let fifo = scratch.appendingPathComponent("model.fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertEqual(mkfifo(scratch.appendingPathComponent("s").path, 0o600), 0)
        // A GGUF whose architecture is "\e[31mred\0tail": it was printed with live colour and cut at the NUL.
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        let key = Array("general.architecture".utf8), arch: [UInt8] = [0x1B] + Array("[31mred".utf8) + [0] + Array("tail".utf8)
        let gguf = Array("GGUF".utf8) + le(UInt32(3)) + le(UInt64(0)) + le(UInt64(1))
            + le(UInt64(key.count)) + key + le(UInt32(8)) + le(UInt64(arch.count)) + arch
        let escaping = scratch.appendingPathComponent("escape.gguf")
        try Data(gguf).write(to: escaping)
        for (args, expected, flagError) in [
            (["--window", "9223372036854775807", "hi"], "--window must be from 1 to", true),
            (["--sinks", "9223372036854775807", "hi"], "--sinks must be from 0 to", true),
            (["--window", "-1", "hi"], "--window must be from 1 to", true),
            (["--yarn-orig-ctx", "9223372036854775807", "hi"], "--yarn-orig-ctx must be from 1 to", true),
            (["--window", "10000000", "hi"], "the KV cache of 10000004 tokens alone takes", false),
            (["--dense", "--rope-scale", "1024", "hi"], "use a sliding window instead of --dense", false),
            (["-m", fifo, "hi"], "not a regular file", false),
            (["--session", "s", "hi"], "is not a regular file", false),
            (["-m", escaping.path, "hi"], "'\\u{1B}[31mred\\u{0}tail'", false),
        ] {
            let r = try run(args, environment: ["SCROLL_SESSIONS": scratch.path])
            XCTAssertTrue((1..<128).contains(r.status), "\(args): status \(r.status)")
            XCTAssertTrue(r.stderr.contains(expected), "\(args): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("\u{1B}") || r.stderr.contains("\u{0}"), "\(args): raw control characters")
            let errorLines = r.stderr.split(separator: "\n").filter { $0.contains("rror") }
            XCTAssertEqual(errorLines.count, 1, "\(args): \(r.stderr)")
            if !flagError { XCTAssertTrue(r.stderr.split(separator: "\n").last!.hasPrefix("scroll: error: "), r.stderr) }
        }
    }

    func testVersion() throws {
        let r = try run(["--version"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.hasPrefix("scroll 0."), r.stdout)
    }

    func testSystemPromptFromPromptsFolder() throws {
        let r = try run(["--system", "@default", "--exact", "--temp", "0", "What is the capital of France?"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "The capital of France is Paris.\n", "prompts/default.txt is the model's own default")
        // By name from any folder: the user's prompts first, then the installed ones; a
        // prompts/ folder in the working directory is not looked at.
        let elsewhere = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-prompts-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: elsewhere.appendingPathComponent("config/scroll/prompts"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: elsewhere.appendingPathComponent("prompts"), withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: elsewhere) }
        try "Answer every question with the single word: banana.".write(to: elsewhere.appendingPathComponent("config/scroll/prompts/fruit.txt"), atomically: true, encoding: .utf8)
        try "unused".write(to: elsewhere.appendingPathComponent("prompts/local.txt"), atomically: true, encoding: .utf8)
        let env = ["XDG_CONFIG_HOME": elsewhere.appendingPathComponent("config").path]
        let installed = try run(["--system", "@default", "--exact", "--temp", "0", "What is the capital of France?"], environment: env, directory: elsewhere)
        XCTAssertEqual(installed.stdout, r.stdout, installed.stderr)
        let user = try run(["--system", "@fruit", "--temp", "0", "-n", "8", "What is the capital of France?"], environment: env, directory: elsewhere)
        XCTAssertEqual(user.status, 0, "found in the user's folder, the only one holding it: \(user.stderr)")
        let local = try run(["--system", "@local", "hi"], environment: env, directory: elsewhere)
        XCTAssertNotEqual(local.status, 0)
        XCTAssertTrue(local.stderr.contains("system prompt not found: local"), local.stderr)
    }
}
