import Foundation
import XCTest

/// Sessions from the command line (issue 7): --session resumes, `scroll sessions` lists,
/// shows and removes, names cannot escape the folder, and a save killed at any moment
/// leaves the previous one whole.
final class SessionCLITests: XCTestCase {
    var folder = ""
    var env: [String: String] { ["SCROLL_SESSIONS": folder] }

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-cli-sessions-\(UUID().uuidString)").path
        addTeardownBlock { [folder] in try? FileManager.default.removeItem(atPath: folder) }
    }

    func testSessionResumesListsShowsAndRemoves() throws {
        // BANANA, not PELICAN: after "PELIC" the end of the turn came within rounding of "AN"
        // and took it on AVX2 hosts (CI, 2026-12-04); BANANA held under every kernel set, BLAS
        // core, KV type and thread count tried.
        let doc = "Notes from the meeting. The secret code word is BANANA. Everything else was routine.\n"
        let first = try run(["--session", "notes", "--temp", "0", "-n", "8", "Say OK."], stdin: Data(doc.utf8), environment: env)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/notes"))
        let ls = try run(["sessions", "ls"], environment: env)
        XCTAssertEqual(ls.status, 0, ls.stderr)
        XCTAssertTrue(ls.stdout.contains("notes") && ls.stdout.contains("SmolLM2"), ls.stdout)
        let second = try run(["--session", "notes", "-n", "30", "What is the secret code word?"], environment: env)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stderr.contains("resumed session notes"), second.stderr)
        XCTAssertTrue(second.stdout.uppercased().contains("BANANA"), second.stdout)
        let show = try run(["sessions", "show", "notes"], environment: env)
        XCTAssertEqual(show.status, 0, show.stderr)
        XCTAssertTrue(show.stdout.contains("[user] What is the secret code word?"), show.stdout)
        XCTAssertTrue(show.stdout.contains("temp 0.0"), "the first run's sampler was kept: \(show.stdout)")
        XCTAssertEqual(show.stdout.components(separatedBy: "[system]").count - 1, 1, "the system message once: \(show.stdout)")
        let rm = try run(["sessions", "rm", "notes"], environment: env)
        XCTAssertEqual(rm.status, 0, rm.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/notes"))
    }

    func testNamesCannotEscapeTheFolder() throws {
        for name in ["../evil", "/etc/passwd", ".hidden", "a/b", ""] {
            let r = try run(["--session", name, "-n", "1", "hi"], environment: env)
            XCTAssertNotEqual(r.status, 0, name)
            XCTAssertTrue(r.stderr.contains("invalid session name"), r.stderr)
        }
        let rm = try run(["sessions", "rm", "../CLITests.swift"], environment: env)
        XCTAssertNotEqual(rm.status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: ScrollProcess.repoRoot.path + "/Tests/ScrollTests/CLITests.swift"))
    }

    /// A damaged session named on the command line: one line, exit 1, the file left alone.
    func testDamagedSessionIsRefusedAndKept() throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let junk = Data("SCROLLSN but then nonsense".utf8)
        FileManager.default.createFile(atPath: folder + "/broken", contents: junk)
        let r = try run(["--session", "broken", "-n", "1", "hi"], environment: env)
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("cannot load session"), r.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: folder + "/broken"), junk)
    }

    /// kill -9 while saving, 50 times: the session file is always the last complete save,
    /// byte for byte, and it loads.
    func testKilledSavesNeverLoseThePreviousOne() throws {
        // A document past the window, so the session holds memory blocks and a follow-up's
        // save appends a frame (small sessions are rewritten whole: a frame would be as large).
        guard let gpl = FileManager.default.contents(atPath: "/usr/share/common-licenses/GPL-3") else {
            throw XCTSkip("/usr/share/common-licenses/GPL-3 is missing")
        }
        let base = try run(["--session", "drill", "--temp", "0", "-n", "4", "Count to three."], stdin: gpl.prefix(6_000), environment: env)
        XCTAssertEqual(base.status, 0, base.stderr)
        let path = folder + "/drill"
        func size() -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1 }
        /// The tokens `sessions show` reads from the last whole save (it fails on a damaged one).
        func savedTokens(_ attempt: Int) throws -> Int {
            let show = try run(["sessions", "show", "drill"], environment: env)
            XCTAssertEqual(show.status, 0, "attempt \(attempt): \(show.stderr)")
            return Int(show.stdout.split(separator: " ").dropFirst(2).first ?? "") ?? -1
        }
        var tokens = try savedTokens(0)
        var killedMidSave = 0, completed = 0, attempts = 0, killedAppending = 0
        // After a kill the next save is whole (the file no longer ends where the process
        // left it); let it finish every other time, so that appends are drilled again.
        var letFinish = false
        while killedMidSave < 50 && attempts < 150 {
            attempts += 1
            let before = size()
            let p = Process()
            p.executableURL = ScrollProcess.executable
            p.arguments = ["--session", "drill", "--temp", "0", "-n", "2", "More."]
            p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            p.standardInput = FileHandle.nullDevice
            try p.run()
            let temporary = folder + "/.drill.saving-\(p.processIdentifier)"
            // Wait for the save to begin — a whole save's temporary file, or the session
            // growing as a frame is appended — then kill at a random moment inside it.
            while p.isRunning && !FileManager.default.fileExists(atPath: temporary) && size() == before { usleep(100) }
            let appending = !FileManager.default.fileExists(atPath: temporary)
            if p.isRunning && !letFinish {
                usleep(UInt32.random(in: 0...4000))
                kill(p.processIdentifier, SIGKILL)
            }
            p.waitUntilExit()
            if p.terminationReason == .uncaughtSignal {
                killedMidSave += 1
                if appending { killedAppending += 1 }
                letFinish = !appending || killedAppending % 2 == 0
                // The save before, or this one if it had just ended; never less, never damaged.
                let now = try savedTokens(attempts)
                XCTAssertGreaterThanOrEqual(now, tokens, "a killed save lost the session (attempt \(attempts))")
                tokens = now
            } else {
                // It loaded what the killed ones left (a save cut short is skipped) and saved.
                completed += 1
                letFinish = false
                XCTAssertEqual(p.terminationStatus, 0, "attempt \(attempts)")
                tokens = try savedTokens(attempts)
            }
        }
        XCTAssertEqual(killedMidSave, 50, "\(completed) saves completed before a kill")
        // Both kinds of save are drilled: an append, and the whole save that follows a cut one.
        XCTAssertGreaterThanOrEqual(killedAppending, 10, "kills while appending")
        XCTAssertGreaterThanOrEqual(killedMidSave - killedAppending, 10, "kills while saving whole")
        let resumed = try run(["--session", "drill", "--temp", "0", "-n", "2", "Go on."], environment: env)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertGreaterThan(try savedTokens(attempts + 1), tokens)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".saving-") }
        XCTAssertTrue(leftovers.isEmpty, "stale temporary files are cleaned up by the next save: \(leftovers)")
    }
    /// A scroll writing a long reply into `name`, started and streaming (its first bytes of
    /// reply read); the pipe it writes to is returned to be drained.
    private func streamingReply(_ name: String) throws -> (Process, FileHandle, Data) {
        let p = Process()
        p.executableURL = ScrollProcess.executable
        p.arguments = ["--session", name, "--temp", "0", "-n", "400", "Tell me a long story about a dragon and a knight."]
        p.environment = ProcessInfo.processInfo.environment.merging(env) { $1 }
        p.currentDirectoryURL = ScrollProcess.repoRoot
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try p.run()
        var streamed = Data()
        while streamed.count < 60 {
            let more = out.fileHandleForReading.availableData
            if more.isEmpty { break }
            streamed += more
        }
        return (p, out.fileHandleForReading, streamed)
    }

    /// Two writers: while one scroll holds a session, a second is refused with one line
    /// naming the holder, before it reads its document, and `sessions rm` is refused too;
    /// the holder's exchange is saved whole, and the session is free again afterwards.
    func testASessionInUseIsRefusedToOthers() throws {
        let (holder, out, _) = try streamingReply("busy")
        let second = try run(["--session", "busy", "-n", "4", "Say OK."], stdin: Data("Another document.\n".utf8), environment: env)
        XCTAssertEqual(second.status, 1, second.stderr)
        XCTAssertEqual(second.stderr.trimmingCharacters(in: .newlines),
                       "scroll: error: session busy is in use by another scroll (process \(holder.processIdentifier)); wait for it to finish, or use another name")
        let rm = try run(["sessions", "rm", "busy"], environment: env)
        XCTAssertEqual(rm.status, 1, rm.stderr)
        XCTAssertTrue(rm.stderr.contains("in use"), rm.stderr)
        _ = out.readDataToEndOfFile()
        holder.waitUntilExit()
        XCTAssertEqual(holder.terminationStatus, 0)
        let show = try run(["sessions", "show", "busy"], environment: env)
        XCTAssertTrue(show.stdout.contains("[user] Tell me a long story") && !show.stdout.contains("Another document"), show.stdout)
        let after = try run(["--session", "busy", "-n", "4", "Say OK."], environment: env)
        XCTAssertEqual(after.status, 0, after.stderr)
    }

    /// SIGTERM and SIGHUP mid-reply in a new session's first exchange: the reply stops, the
    /// session is saved with the part that was streamed, no temporary file stays, and the
    /// process ends by the signal (status 143 or 129 to a shell).
    func testTerminationMidReplySavesThePartialReply() throws {
        for (sig, name) in [(SIGTERM, "term"), (SIGHUP, "hup")] {
            let (p, out, streamed) = try streamingReply(name)
            kill(p.processIdentifier, sig)
            let rest = out.readDataToEndOfFile()
            p.waitUntilExit()
            XCTAssertEqual(p.terminationReason, .uncaughtSignal, name)
            XCTAssertEqual(p.terminationStatus, sig, name)
            let show = try run(["sessions", "show", name], environment: env)
            XCTAssertEqual(show.status, 0, show.stderr)
            let reply = String(decoding: streamed + rest, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            XCTAssertTrue(show.stdout.contains("[assistant] " + reply.prefix(40)), "\(name): \(show.stdout)")
            XCTAssertLessThan(reply.count, 1000, "the reply was stopped: \(reply)")
            let temporary = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.contains(".saving-") }
            XCTAssertTrue(temporary.isEmpty, "\(temporary)")
        }
    }
    /// A resume without flags takes the session's own cache, RoPE and memory settings; a flag
    /// that contradicts them is refused with a line naming it, and the session is kept.
    func testResumeTakesTheSessionsSettings() throws {
        let first = try run(["--session", "small", "--window", "256", "--sinks", "8", "--no-memory", "--temp", "0", "-n", "4", "Say OK."], environment: env)
        XCTAssertEqual(first.status, 0, first.stderr)
        let saved = try Data(contentsOf: URL(fileURLWithPath: folder + "/small"))
        let plain = try run(["--session", "small", "-n", "4", "Say OK again."], environment: env)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertTrue(plain.stderr.contains("resumed session small"), plain.stderr)
        let show = try run(["sessions", "show", "small"], environment: env)
        XCTAssertTrue(show.stdout.contains("sinks 8 + window 256") && show.stdout.contains("memory off"), show.stdout)
        XCTAssertTrue(show.stdout.contains("[user] Say OK again."), show.stdout)
        let resumedBytes = try Data(contentsOf: URL(fileURLWithPath: folder + "/small"))
        let conflicting = try run(["--session", "small", "--window", "512", "-n", "4", "And again."], environment: env)
        XCTAssertEqual(conflicting.status, 1, conflicting.stderr)
        XCTAssertTrue(conflicting.stderr.contains("--window 256") && conflicting.stderr.contains("--window 512"), conflicting.stderr)
        XCTAssertEqual(conflicting.stderr.split(separator: "\n").count, 1, conflicting.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: folder + "/small")), resumedBytes)
        XCTAssertNotEqual(saved, resumedBytes)
    }
}
