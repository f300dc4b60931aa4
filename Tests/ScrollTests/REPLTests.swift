import Foundation
import XCTest

/// A real terminal driven through tmux (send-keys, capture-pane): what a user sees.
final class TerminalSession {
    let socket = "scroll-test-\(UUID().uuidString.prefix(8))"

    /// Runs a tmux command and returns its output. Through posix_spawn and waitpid, not
    /// Foundation's Process: the server new-session forks keeps Process's internal
    /// descriptors open and Process would wait for it forever.
    @discardableResult
    func tmux(_ args: [String]) throws -> String {
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("tmux-\(UUID().uuidString)").path
        defer { unlink(output) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = (["tmux", "-L", socket] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawnp(&pid, "tmux", &actions, nil, argv, environ) == 0 else {
            throw NSError(domain: "tmux", code: 1, userInfo: [NSLocalizedDescriptionKey: "tmux not found: scripts/setup.sh installs it"])
        }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    }

    /// Starts `command` in a terminal of `width`×50; the pane stays after it exits.
    func start(_ command: String, width: Int = 140) throws {
        try tmux(["new-session", "-d", "-s", "main", "-x", "\(width)", "-y", "50", command + "; echo SCROLL-EXITED $?; sleep 600"])
    }

    /// Keys as tmux names them ("Enter", "C-c", "Tab") or literal text.
    func send(_ keys: String...) throws { try tmux(["send-keys", "-t", "main"] + keys) }

    /// The visible screen and its scrollback.
    func screen() throws -> String { try tmux(["capture-pane", "-t", "main", "-p", "-S", "-300"]) }

    /// Waits until `condition` holds for the screen and returns the screen. A timeout fails
    /// the test at the caller's line with the screen as it was, so a CI log says which step
    /// hung (a failure there once showed only "failed (122.993 seconds)").
    @discardableResult
    func wait(timeout: Double = 60, file: StaticString = #filePath, line: UInt = #line,
              _ condition: (String) -> Bool) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var text = try screen()
        while !condition(text) {
            guard Date() < deadline else {
                XCTFail("timed out after \(Int(timeout)) s waiting for the screen; it shows:\n\(text)", file: file, line: line)
                return text
            }
            usleep(100_000)
            text = try screen()
        }
        return text
    }

    func stop() {
        _ = try? tmux(["kill-server"])
        // kill-server can leave the socket file behind; one per run piled up in /tmp/tmux-UID.
        unlink((ProcessInfo.processInfo.environment["TMUX_TMPDIR"] ?? "/tmp") + "/tmux-\(getuid())/\(socket)")
    }
}

/// The REPL in a real terminal (issue 8): streaming, Ctrl-C, commands, completion, sessions.
final class REPLTests: XCTestCase {
    func lines(_ screen: String) -> [String] {
        screen.split(separator: "\n", omittingEmptySubsequences: false).map { String($0).trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
    }

    func testChatCtrlCSaveQuitResume() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-repl-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: folder) }
        let scroll = "cd '\(ScrollProcess.repoRoot.path)' && SCROLL_SESSIONS='\(folder)' SCROLL_HISTORY='\(folder)/history' '\(ScrollProcess.executable.path)'"
        let term = TerminalSession()
        defer { term.stop() }
        try term.start(scroll + " --temp 0 -n 400")
        try term.wait { $0.contains("/help lists commands") }

        // A question typed over two lines (a trailing \ continues it): the answer streams in;
        // Ctrl-C mid-reply stops it and gives the prompt back.
        try term.send("Tell me a long story \\", "Enter")
        // capture-pane drops trailing blanks, so the continuation prompt shows as "…".
        try term.wait { $0.contains("…") }
        try term.send("about a dragon and a knight.", "Enter")
        var screen = try term.wait { s in
            guard let i = s.range(of: "a knight.") else { return false }
            return s[i.upperBound...].split(separator: " ").count > 8
        }
        try term.send("C-c")
        screen = try term.wait { $0.contains("(stopped)") && self.lines($0).last == ">" }
        XCTAssertTrue(screen.contains("(stopped)"), screen)
        XCTAssertEqual(lines(screen).last, ">", screen)
        XCTAssertTrue(screen.contains(" t/s · cache "), "status line after the reply: \(screen)")

        // Ctrl-C at the prompt clears the line; the program stays.
        try term.send("half a thought")
        try term.wait { $0.contains("half a thought") }
        try term.send("C-c")
        screen = try term.wait { self.lines($0).last == ">" }
        XCTAssertEqual(lines(screen).last, ">", screen)

        // Tab completes a command; unknown commands get a hint; /help lists every command.
        try term.send("/sess", "Tab")
        try term.wait { $0.contains("/sessions") }
        try term.send("C-c")
        try term.send("/frobnicate", "Enter")
        screen = try term.wait { $0.contains("unknown command /frobnicate") }
        XCTAssertTrue(screen.contains("/help lists the commands"), screen)
        try term.send("/help", "Enter")
        screen = try term.wait { $0.contains("/quit") }
        for command in ["/help", "/save", "/load", "/sessions", "/reset", "/system", "/set", "/stats", "/recall", "/file", "/quit"] {
            XCTAssertTrue(screen.contains(command), "\(command) missing from /help: \(screen)")
        }

        try term.send("/save knights", "Enter")
        screen = try term.wait { $0.contains("saved session knights") }
        XCTAssertTrue(screen.contains("saved session knights"), screen)
        try term.send("/quit", "Enter")
        screen = try term.wait { $0.contains("SCROLL-EXITED") }
        XCTAssertTrue(screen.contains("SCROLL-EXITED 0"), screen)
        term.stop()

        // Start again with the session: it is listed, and the conversation goes on from it.
        let again = TerminalSession()
        defer { again.stop() }
        try again.start(scroll + " --session knights -n 40")
        screen = try again.wait { $0.contains("resumed session knights") && $0.contains("/help lists commands") }
        XCTAssertTrue(screen.contains("resumed session knights"), screen)
        try again.send("/sessions", "Enter")
        screen = try again.wait { $0.contains("knights ") && $0.contains("SmolLM2") }
        XCTAssertTrue(screen.contains("SmolLM2"), screen)
        // The two-line question came back from the history file as one entry.
        try again.send("C-r", "long story")
        screen = try again.wait { $0.contains("about a dragon and a knight.") }
        XCTAssertTrue(screen.contains("Tell me a long story") && screen.contains("about a dragon and a knight."), screen)
        try again.send("C-g")
        // Ctrl-D typed while the reply still streams: it waits for the prompt and leaves.
        try again.send("What was the story about?", "Enter")
        try again.wait { $0.contains("What was the story about?") }
        try again.send("C-d")
        screen = try again.wait { $0.contains("SCROLL-EXITED") }
        XCTAssertTrue(screen.contains("SCROLL-EXITED 0"), screen)
        XCTAssertTrue(screen.contains(" t/s · cache "), "the reply ran to its end first: \(screen)")
        XCTAssertTrue(screen.lowercased().contains("dragon") || screen.lowercased().contains("knight"), screen)
        let history = (try? String(contentsOfFile: folder + "/history", encoding: .utf8)) ?? ""
        XCTAssertTrue(history.contains("What was the story about?"), "history file: \(history)")
        XCTAssertTrue(history.contains("Tell me a long story \nabout a dragon and a knight."), "history file: \(history)")
    }
    /// /file reads a document; a question about a fact that has left the window is answered
    /// from the passage read again before it, and /recall shows that passage: the fact's
    /// sentence, where in the stream it came from, and the words that chose it.
    func testRecallShowsThePassageReadAgain() throws {
        guard let gpl = FileManager.default.contents(atPath: "/usr/share/common-licenses/GPL-3") else {
            throw XCTSkip("/usr/share/common-licenses/GPL-3 is missing")
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-recall-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: folder) }
        let paragraphs = String(decoding: gpl, as: UTF8.self).components(separatedBy: "\n\n").prefix(40)
        let fact = "The secret code of the amber gate is 58213."
        try (paragraphs.prefix(10) + [fact] + paragraphs.dropFirst(10)).joined(separator: "\n\n")
            .write(toFile: folder + "/doc.txt", atomically: true, encoding: .utf8)
        let term = TerminalSession()
        defer { term.stop() }
        try term.start("cd '\(folder)' && SCROLL_SESSIONS='\(folder)' SCROLL_HISTORY='\(folder)/history' '\(ScrollProcess.executable.path)'"
                       + " -m '\(ScrollProcess.repoRoot.path)/models/SmolLM2-135M-Instruct.Q4_1.gguf' --temp 0 -n 24")
        try term.wait { $0.contains("/help lists commands") }
        try term.send("/file doc.txt", "Enter")
        try term.wait(timeout: 120) { self.lines($0).last == ">" && $0.contains("doc.txt") }
        try term.send("What is the secret code of the amber gate?", "Enter")
        var screen = try term.wait(timeout: 120) { $0.contains(" t/s · cache ") && self.lines($0).last == ">" }
        XCTAssertTrue(screen.contains("58213"), screen)
        try term.send("/recall", "Enter")
        screen = try term.wait { $0.contains("recalled by attention") || $0.contains("nothing recalled") }
        let shown = lines(screen)
        let heading = try XCTUnwrap(shown.firstIndex { $0.contains("read again before the question") }, screen)
        let passage = shown[heading...].firstIndex { $0.hasPrefix("tokens ") && $0.contains("amber") && $0.contains("gate") }
        XCTAssertNotNil(passage, screen)
        XCTAssertTrue(shown[(passage ?? heading)...].dropFirst().first?.hasSuffix("The secret code of the amber gate is 58213.") == true, screen)
    }
    /// /show names the model, its size and weight types, the settings, the system prompt and
    /// the session; a reply cut by the token limit says so; /bye (like /exit) leaves as /quit does.
    func testShowCutReplyAndBye() throws {
        let term = TerminalSession()
        defer { term.stop() }
        try term.start("cd '\(ScrollProcess.repoRoot.path)' && '\(ScrollProcess.executable.path)' --temp 0 -n 6 --system 'Answer in French.'")
        try term.wait { $0.contains("/help lists commands") }
        try term.send("/show", "Enter")
        let screen = try term.wait { $0.contains("session: none") }
        for fragment in ["model: SmolLM2-135M-Instruct.Q4_1.gguf — llama, 135M parameters (Q4_1", "trained context 8192", "chat template: ChatML",
                         "cache: sinks 4 + window 1024", "sampling: temp 0.0", "repeat-penalty 1.1 over 256", "max-tokens 6", "system prompt: Answer in French."] {
            XCTAssertTrue(screen.contains(fragment), "\(fragment)\n\(screen)")
        }
        try term.send("Tell me a long story about a lighthouse.", "Enter")
        try term.wait { $0.contains("(cut at 6 tokens: /set max-tokens N for longer replies)") }
        try term.send("/bye", "Enter")
        try term.wait { $0.contains("SCROLL-EXITED 0") }
    }

    /// /retry replaces the last reply with a new one (the conversation keeps one exchange);
    /// /edit sends the message as $EDITOR left it in place of the last exchange; /undo drops
    /// it, down to an empty cache, and says when there is nothing left to undo.
    func testRetryAndUndo() throws {
        let term = TerminalSession()
        defer { term.stop() }
        try term.start("cd '\(ScrollProcess.repoRoot.path)' && EDITOR='sed -i s/fruits/colours/' '\(ScrollProcess.executable.path)' --temp 0.9 --seed 3 -n 16", width: 60)
        try term.wait { $0.contains("/help lists commands") }
        func replies(_ screen: String) -> Int { screen.components(separatedBy: " t/s · cache ").count - 1 }
        try term.send("Name three fruits.", "Enter")
        try term.wait { replies($0) == 1 }
        try term.send("/retry", "Enter")
        try term.wait { replies($0) == 2 }
        try term.send("/stats", "Enter")
        let stats = try term.wait { $0.contains("tokens seen: ") }
        XCTAssertTrue(stats.contains("; messages: 2"), "the retried reply replaces the first:\n\(stats)")
        try term.send("/edit", "Enter")
        try term.wait { replies($0) == 3 }
        try term.send("/undo", "Enter")
        try term.wait { $0.contains("undid \"Name three colours.\" and its reply") }
        try term.send("/stats", "Enter")
        try term.wait { $0.contains("tokens seen: 0; messages: 0") }
        try term.send("/undo", "Enter")
        try term.wait { $0.contains("error: nothing to undo") }
        try term.send("/bye", "Enter")
        try term.wait { $0.contains("SCROLL-EXITED 0") }
    }

    /// A note while a piped document's progress bar is drawn on the terminal gets a line of
    /// its own: Ctrl-C's "stopped after reading" was printed on the bar's line.
    func testNotesClearTheProgressBar() throws {
        guard FileManager.default.fileExists(atPath: "/usr/share/common-licenses/GPL-3") else { throw XCTSkip("GPL-3 missing") }
        let term = TerminalSession()
        defer { term.stop() }
        try term.start("cd '\(ScrollProcess.repoRoot.path)' && for i in 1 2 3 4 5 6; do cat /usr/share/common-licenses/GPL-3; done | '\(ScrollProcess.executable.path)' -n 4 'What is this?'")
        try term.wait { $0.contains(" tokens  ") && $0.contains("ETA") }
        try term.send("C-c")
        let screen = try term.wait { $0.contains("SCROLL-EXITED") }
        let stopped = try XCTUnwrap(lines(screen).first { $0.contains("scroll: stopped after reading") }, screen)
        XCTAssertTrue(stopped.hasPrefix("scroll: stopped after reading"), "on a line of its own: \(stopped)")
    }

    /// At 60 columns a reply wraps between words, never inside one (its words are the ones
    /// the same reply has through a pipe), and /help wraps under its help column.
    func testRepliesWrapAtWords() throws {
        let question = "Describe a walk through a forest in autumn."
        let args = "--temp 0 -n 80"
        let term = TerminalSession()
        defer { term.stop() }
        try term.start("cd '\(ScrollProcess.repoRoot.path)' && '\(ScrollProcess.executable.path)' \(args) '\(question)' && echo REPLY-END"
                       + " && '\(ScrollProcess.executable.path)' \(args)", width: 60)
        try term.wait(timeout: 120) { $0.contains("/help lists commands") }
        try term.send("/help", "Enter")
        let screen = try term.wait { $0.contains("Ctrl-D leaves.\n") || $0.contains("/quit") && $0.contains("Ctrl-C stops") }
        let all = screen.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let end = try XCTUnwrap(all.firstIndex { $0.hasPrefix("REPLY-END") }, screen)
        let reply = all[..<end]
        let unwrapped = try run(args.split(separator: " ").map(String.init) + [question]).stdout
        XCTAssertGreaterThan(unwrapped.count, 120, "a reply longer than a line")
        XCTAssertEqual(reply.joined(separator: " ").split(whereSeparator: \.isWhitespace), unwrapped.split(whereSeparator: \.isWhitespace), screen)
        // /help wraps under its help column (the terminal's own wrap would start at column 0).
        let set = try XCTUnwrap(all.lastIndex { $0.hasPrefix("/set [NAME VALUE]") }, screen)
        XCTAssertTrue(all[set + 1].hasPrefix(String(repeating: " ", count: 22)) && all[set + 1].count > 22, screen)
    }

    /// $SCROLL_HISTORY naming a FIFO or another program's file: the REPL starts at once (the
    /// FIFO hung open() beyond Ctrl-C's reach), says so in one line, and leaves the file as it
    /// was (any file it named was cut to 1,000 lines and chmod 600).
    func testForeignHistoryFileIsLeftAlone() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-history-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: folder) }
        let fifo = folder + "/fifo", notes = folder + "/notes.txt"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let text = (1...2000).map { "note \($0)" }.joined(separator: "\n") + "\n"
        try text.write(toFile: notes, atomically: true, encoding: .utf8)
        XCTAssertEqual(chmod(notes, 0o644), 0)
        for (path, note) in [(fifo, "is not a regular file"), (notes, "is not a Scroll history file")] {
            let term = TerminalSession()
            defer { term.stop() }
            try term.start("SCROLL_HISTORY='\(path)' '\(ScrollProcess.executable.path)' -m '\(ScrollProcess.repoRoot.path)/models/SmolLM2-135M-Instruct.Q4_1.gguf' --temp 0 -n 4")
            let screen = try term.wait { $0.contains("/help lists commands") }
            XCTAssertTrue(screen.contains("scroll: history: \(path) \(note)"), screen)
            try term.send("Hello", "Enter")
            try term.wait { $0.contains(" t/s") && self.lines($0).last == ">" }
            try term.send("/quit", "Enter")
            try term.wait { $0.contains("SCROLL-EXITED 0") }
        }
        XCTAssertEqual(try String(contentsOfFile: notes, encoding: .utf8), text)
        var st = stat()
        XCTAssertEqual(stat(notes, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o644)
    }

    /// A session attached with /save is never written over by another conversation: /reset
    /// leaves it as saved and goes on unattached; /load attaches again (the prompt names
    /// the session); a SIGHUP mid-reply saves it with the partial reply and ends Scroll with
    /// status 129, leaving no temporary file.
    func testAttachedSessionSurvivesResetAndHangup() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-attach-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: folder) }
        let env = ["SCROLL_SESSIONS": folder]
        let term = TerminalSession()
        defer { term.stop() }
        try term.start("cd '\(ScrollProcess.repoRoot.path)' && SCROLL_SESSIONS='\(folder)' SCROLL_HISTORY='\(folder)/history' '\(ScrollProcess.executable.path)' --temp 0 -n 300")
        try term.wait { $0.contains("/help lists commands") }
        try term.send("My cat is called Tiberius. Say OK.", "Enter")
        try term.wait { $0.contains(" t/s · cache ") && self.lines($0).last == ">" }
        try term.send("/save pets", "Enter")
        var screen = try term.wait { $0.contains("saved session pets") && self.lines($0).last == "pets>" }
        XCTAssertEqual(lines(screen).last, "pets>", screen)
        try term.send("/reset", "Enter")
        screen = try term.wait { $0.contains("session pets keeps the earlier one") && self.lines($0).last == ">" }
        try term.send("Name three colours.", "Enter")
        try term.wait { $0.components(separatedBy: " t/s · cache ").count == 3 && self.lines($0).last == ">" }
        var show = try run(["sessions", "show", "pets"], environment: env)
        XCTAssertTrue(show.stdout.contains("Tiberius") && !show.stdout.contains("colours"), show.stdout)

        // A session saved with other cache settings cannot be loaded into this cache: one line says how to resume it.
        XCTAssertEqual(try run(["--session", "small", "--window", "256", "-n", "2", "Hi."], environment: env).status, 0)
        try term.send("/load small", "Enter")
        try term.wait { $0.contains("session small was saved with other cache settings: resume it with scroll --session small") }
        try term.send("/load pets", "Enter")
        try term.wait { $0.contains("loaded session pets") && self.lines($0).last == "pets>" }
        try term.send("Tell me a long story about my cat.", "Enter")
        screen = try term.wait { s in
            guard let i = s.range(of: "about my cat.") else { return false }
            return s[i.upperBound...].split(separator: " ").count > 8
        }
        let pid = try term.tmux(["display", "-p", "-t", "main", "#{pane_pid}"]).trimmingCharacters(in: .whitespacesAndNewlines)
        let scroll = try XCTUnwrap(Int32(shell("pgrep -x scroll -P \(pid)").trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(scroll, SIGHUP)
        screen = try term.wait { $0.contains("SCROLL-EXITED") }
        XCTAssertTrue(screen.contains("SCROLL-EXITED 129"), screen)
        show = try run(["sessions", "show", "pets"], environment: env)
        XCTAssertTrue(show.stdout.contains("[user] Tell me a long story about my cat.\n\n[assistant] "), show.stdout)
        XCTAssertTrue(show.stdout.contains("Tiberius"), show.stdout)
        let temporary = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".saving-") }
        XCTAssertTrue(temporary.isEmpty, "\(temporary)")
    }

    /// The output of a shell command.
    private func shell(_ command: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
