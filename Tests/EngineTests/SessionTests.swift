import CKernels
@testable import Engine
import Foundation
import XCTest

/// Session files (Session/SessionFile.swift): exact resume, the int8 bound, and the failure
/// drills — every damaged or foreign file gives one clear line and leaves the conversation
/// in use untouched.
final class SessionTests: XCTestCase {
    static let text = String(repeating: "The lighthouse keeper counted the ships that passed the rocks each night and wrote their names in a book. ", count: 12)

    var model: Transformer { TestSupport.shared.model }
    var tokenizer: Tokenizer { TestSupport.shared.tokenizer }

    /// A small window with memory on, so a session holds sinks, a wrapped ring, finished
    /// memory blocks, a block being filled and a ranking.
    func makeCache(precision: KVPrecision = .f32, window: Int = 64) -> KVCache {
        var m = MemorySettings()
        m.blockSize = 16
        m.topBlocks = 2
        return model.makeCache(policy: CachePolicy(sinks: 4, window: window), precision: precision, memory: m)
    }

    func makeGenerator(_ cache: KVCache, temperature: Float = 0.8) -> Generator {
        var s = SamplerSettings()
        s.temperature = temperature
        s.seed = 42
        return Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: s), cache: cache)
    }

    /// A generator that has read the text and written a few tokens.
    func primed(precision: KVPrecision = .f32) throws -> Generator {
        let g = makeGenerator(makeCache(precision: precision))
        try g.feed(tokenizer.encode(Self.text))
        g.generate(maxTokens: 5)
        return g
    }

    func conversation(_ g: Generator) -> SessionConversation {
        SessionConversation(messages: [ChatMessage(role: .user, content: "Who counted the ships?")], systemPrompt: "Be brief.",
                            raw: false, sampler: g.sampler)
    }

    func temporaryPath() -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("scroll-sessions-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir.appendingPathComponent("s").path
    }

    func load(_ path: String, like cache: KVCache) throws -> SessionFile.Contents {
        try SessionFile.load(from: path, model: model, tokenizer: tokenizer, freshCache: makeCache(precision: cache.precision))
    }

    /// A session shorter than the sinks (one short question with 64 sinks) resumes and goes
    /// on as the original does.
    func testSessionShorterThanTheSinksResumes() throws {
        let cache = { self.model.makeCache(policy: CachePolicy(sinks: 64, window: 32), memory: MemorySettings()) }
        let g = makeGenerator(cache(), temperature: 0)
        try g.feed(tokenizer.encode("Count to three."))
        g.generate(maxTokens: 3)
        XCTAssertLessThan(g.history.count, 64)
        let path = temporaryPath()
        try SessionFile.save(to: path, generator: g, conversation: conversation(g), encoding: .lossless, modelName: "m")
        let c = try SessionFile.load(from: path, model: model, tokenizer: tokenizer, freshCache: cache())
        // The original goes on first: restore() puts the saved logits in the shared buffer.
        let original = g.generate(maxTokens: 8).ids
        let resumed = makeGenerator(cache(), temperature: 0)
        resumed.restore(cache: c.cache, history: c.history, logits: c.logits, sampler: c.conversation.restoredSampler)
        XCTAssertEqual(resumed.generate(maxTokens: 8).ids, original)
        XCTAssertFalse(original.isEmpty)
    }

    /// Lossless: the resumed generator samples the same tokens with the same logits, bit for bit.
    func testLosslessResumeContinuesBitForBit() throws {
        let g = try primed()
        XCTAssertGreaterThan(g.cache.memory!.blocks, 2)
        XCTAssertGreaterThan(g.cache.memory!.pendingCount[0], 0)
        let path = temporaryPath()
        try SessionFile.save(to: path, generator: g, conversation: conversation(g), encoding: .lossless, modelName: "m")
        let c = try load(path, like: g.cache)
        XCTAssertEqual(c.conversation.messages, conversation(g).messages)
        XCTAssertEqual(c.conversation.systemPrompt, "Be brief.")
        XCTAssertEqual(c.cache.memory!.lastRecall(), g.cache.memory!.lastRecall())
        let blocksAtSave = c.cache.memory!.blocks
        // The generators share the model's logits buffer: the original goes on first, then
        // the resumed one, whose restore() puts the saved logits back.
        let original = g.generate(maxTokens: 24).ids
        let originalLogits = Array(g.lastLogits!)
        let resumed = makeGenerator(makeCache())
        resumed.restore(cache: c.cache, history: c.history, logits: c.logits, sampler: c.conversation.restoredSampler)
        let again = resumed.generate(maxTokens: 24).ids
        XCTAssertEqual(again, original)
        XCTAssertTrue(Array(resumed.lastLogits!) == originalLogits, "logits bit for bit")
        XCTAssertEqual(resumed.history, g.history)
        // Blocks finished after the resume stand for themselves as they would have: the scores
        // of the block being filled and the ring of query sums came back too.
        XCTAssertGreaterThan(resumed.cache.memory!.blocks, blocksAtSave)
        XCTAssertEqual(resumed.cache.memory!.representatives, g.cache.memory!.representatives, "representative keys")
    }

    /// int8 (the default): as the text goes on, next-token probabilities move by less than
    /// 0.1 and the greedy token holds wherever it leads by 0.1. (One near-tie next token used
    /// to be checked, and flipped. With this 64-token window nearly every key is coded, and
    /// over these 8 tokens max |Δp| measured 0.017–0.08 across memory-position schemes;
    /// at a realistic size the same codec moves perplexity by +0.30%: docs/sessions.md.)
    func testInt8ResumeStaysClose() throws {
        let g = try primed()
        let path = temporaryPath()
        try SessionFile.save(to: path, generator: g, conversation: conversation(g), encoding: .int8, modelName: "m")
        let c = try load(path, like: g.cache)
        // The text goes on as it did: most next tokens lead clearly, and those must hold.
        var maxDiff: Float = 0, maxProbDiff = 0.0, greedyChecks = 0
        for token in tokenizer.encode(" The lighthouse keeper counted the ships that passed") {
            let reference = Array(model.forward(token: token, cache: g.cache))
            let resumed = Array(model.forward(token: token, cache: c.cache))
            maxDiff = max(maxDiff, zip(reference, resumed).map { abs($0 - $1) }.max()!)
            let p = softmax(reference), q = softmax(resumed)
            maxProbDiff = max(maxProbDiff, zip(p, q).map { abs($0 - $1) }.max()!)
            let ranked = p.indices.sorted { p[$0] > p[$1] }
            if p[ranked[0]] - p[ranked[1]] > 0.1 {
                greedyChecks += 1
                XCTAssertEqual(ranked[0], q.indices.max { q[$0] < q[$1] }, "greedy token after \(tokenizer.decode([token]))")
            }
        }
        print("int8 session: max |Δlogit| \(maxDiff), max |Δp| \(maxProbDiff), greedy held \(greedyChecks) times")
        XCTAssertLessThan(maxProbDiff, 0.1)
        XCTAssertGreaterThan(greedyChecks, 3)
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int
        let f16State = g.cache.tokensSeen * g.cache.layerCount * g.cache.kvHeadCount * g.cache.headDim * 2 * 2
        print("int8 session: \(size) bytes for \(g.cache.tokensSeen) tokens = \(Double(size) / Double(f16State)) of an f16 state")
    }

    func softmax(_ x: [Float]) -> [Double] {
        let m = Double(x.max()!)
        let e = x.map { exp(Double($0) - m) }
        let z = e.reduce(0, +)
        return e.map { $0 / z }
    }

    /// Every kind of bad file: one line naming the problem; the conversation in use keeps going.
    func testBadFilesGiveOneLineAndTouchNothing() throws {
        let g = try primed()
        let path = temporaryPath()
        try SessionFile.save(to: path, generator: g, conversation: conversation(g), modelName: "m")
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let before = g.history
        let logitsBefore = Array(g.lastLogits!)
        func expectFailure(_ bytes: Data, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
            let bad = path + ".bad"
            try! bytes.write(to: URL(fileURLWithPath: bad))
            XCTAssertThrowsError(try load(bad, like: g.cache), file: file, line: line) { error in
                let message = "\(error)"
                XCTAssertFalse(message.contains("\n"), message, file: file, line: line)
                XCTAssertTrue(message.contains("cannot load session"), message, file: file, line: line)
                if !fragment.isEmpty { XCTAssertTrue(message.contains(fragment), "\(message) should mention \(fragment)", file: file, line: line) }
            }
        }
        expectFailure(Data(), "empty")
        expectFailure(Data("hello, I am a text file\n".utf8), "not a Scroll session")
        expectFailure(try Data(contentsOf: URL(fileURLWithPath: TestSupport.modelPath), options: .alwaysMapped).prefix(4096), "not a Scroll session")
        var wrongVersion = good; wrongVersion[8] = 9
        expectFailure(wrongVersion, "version 9")
        for cut in [10, 40, good.count / 3, good.count - 5, good.count - 1] { expectFailure(good.prefix(cut), "") }
        var flipped = good; flipped[good.count / 2] ^= 0x10
        expectFailure(flipped, "damaged")
        var headerFlip = good; headerFlip[30] ^= 0x01
        expectFailure(headerFlip, "")
        // Bytes after the last frame are a save cut short: the file loads as it was saved.
        try (good + Data([0, 0])).write(to: URL(fileURLWithPath: path + ".tail"))
        XCTAssertTrue(try load(path + ".tail", like: g.cache).interruptedSave)
        // Another cache shape is another meaning for the same bytes.
        XCTAssertThrowsError(try SessionFile.load(from: path, model: model, tokenizer: tokenizer,
                                                  freshCache: makeCache(window: 32))) { error in
            XCTAssertTrue("\(error)".contains("--window 64"), "\(error)")
        }
        XCTAssertThrowsError(try load(path + ".missing", like: g.cache)) { XCTAssertTrue("\($0)".contains("no such session")) }
        // Sampler values no flag accepts (a negative repeat-last-n crashed the resumed sampler).
        for spoil in [{ (s: inout SamplerSettings) in s.repeatLastN = -1 }, { $0.topP = 2 }, { $0.temperature = -1 }] {
            var sampler = g.sampler
            spoil(&sampler.settings)
            XCTAssertNotNil(sampler.settings.problem)
            try SessionFile.save(to: path + ".sampler", generator: g, conversation: SessionConversation(messages: [], systemPrompt: nil, raw: false, sampler: sampler),
                                 modelName: "m")
            XCTAssertThrowsError(try load(path + ".sampler", like: g.cache)) { error in
                XCTAssertTrue("\(error)".contains("damaged: sampler: " + sampler.settings.problem!), "\(error)")
            }
        }
        XCTAssertEqual(g.history, before)
        XCTAssertEqual(Array(g.lastLogits!), logitsBefore)
        XCTAssertEqual(g.generate(maxTokens: 3).ids.count, 3, "the conversation in use goes on")
    }

    /// Files crafted to make loading grow or to poison the conversation: a few KB of zstd
    /// claiming 2^28 tokens (it took 3.5 GB before), lengths of 2^63 and more, and NaN in the logits or a KV row (one
    /// loaded, then every save failed). Each is refused in one line naming the problem.
    func testCraftedSessionsAreRefusedBeforeTheyGrow() throws {
        let g = try primed()
        let path = temporaryPath()
        try SessionFile.save(to: path, generator: g, conversation: conversation(g), encoding: .lossless, modelName: "m")
        let file = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        func u32(_ at: Int) -> Int { Int(file[at..<(at + 4)].withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }) }
        let headerEnd = 20 + u32(12), summaryBytes = u32(headerEnd), bodyStart = headerEnd + 4 + summaryBytes + 12
        let summary = Array(file[(headerEnd + 4)..<(headerEnd + 4 + summaryBytes)])
        let body = try Zstd.decompress(Array(file[bodyStart...]), limit: 1 << 30)
        func bytes<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        /// The file with its one frame's body replaced (its head's length and checksum made to match).
        func expectRefusal(body: [UInt8], _ fragment: String, line: UInt = #line) throws {
            let compressed = try Zstd.compress(body), length = bytes(UInt64(compressed.count))
            let frame = bytes(UInt32(summary.count)) + summary + length + bytes(SessionFile.crc32(summary + length)) + compressed
            let bad = path + ".crafted"
            try Data(Array(file[..<headerEnd]) + frame).write(to: URL(fileURLWithPath: bad))
            XCTAssertThrowsError(try load(bad, like: g.cache), line: line) { error in
                XCTAssertTrue("\(error)".contains(fragment) && !"\(error)".contains("\n"), "\(error)", line: line)
            }
        }
        let conversationBytes = 4 + Int(body[0..<4].withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) })
        try expectRefusal(body: Array(body[..<conversationBytes]) + bytes(UInt64(0)) + bytes(UInt64(1 << 28)) + [UInt8](repeating: 0, count: 96 << 20),
                          "expands")
        // A length of 2^63 or more trapped its conversion to Int (a mutated file crashed the load).
        for huge in [UInt64(1) << 63, UInt64.max] {
            try expectRefusal(body: Array(body[..<conversationBytes]) + bytes(huge) + Array(body[(conversationBytes + 8)...]), "stream length")
            try expectRefusal(body: Array(body[..<conversationBytes]) + bytes(UInt64(0)) + bytes(huge) + Array(body[(conversationBytes + 16)...]), "stream length")
        }
        let logitsAt = conversationBytes + 16 + 4 * g.history.count + 4
        let rowsAt = logitsAt + 4 * model.config.vocabSize
        let nan = bytes(Float.nan.bitPattern)
        for (at, fragment) in [(logitsAt + 400, "non-finite logits"), (rowsAt + 4 * 70, "non-finite KV row")] {
            var poisoned = body
            poisoned.replaceSubrange(at..<(at + 4), with: nan)
            try expectRefusal(body: poisoned, fragment)
        }
    }

    /// A follow-up's save appends what changed (new window rows, the memory blocks finished
    /// since) instead of rewriting the session: resumed, the appended file continues exactly
    /// as a whole save of the same state does, and the appended frame is a small part of it.
    func testAppendedSaveResumesAsAWholeSave() throws {
        let g = try primed()
        let path = temporaryPath(), whole = path + ".whole"
        let first = try SessionFile.save(to: path, generator: g, conversation: conversation(g), encoding: .lossless, modelName: "m")
        let firstBytes = try Data(contentsOf: URL(fileURLWithPath: path)).count
        let blocksBefore = g.cache.memory!.blocks
        try g.feed(tokenizer.encode(" The keeper's daughter later kept the book herself, adding the weather of each night."))
        g.generate(maxTokens: 6)
        XCTAssertGreaterThan(g.cache.memory!.blocks, blocksBefore, "blocks left the window since the first save")
        let second = try SessionFile.save(to: path, generator: g, conversation: conversation(g), encoding: .lossless, modelName: "m", after: first)
        XCTAssertEqual(second.frames, 2)
        try SessionFile.save(to: whole, generator: g, conversation: conversation(g), encoding: .lossless, modelName: "m")
        let appendedBytes = try Data(contentsOf: URL(fileURLWithPath: path)).count - firstBytes
        let wholeBytes = try Data(contentsOf: URL(fileURLWithPath: whole)).count
        XCTAssertLessThan(appendedBytes, wholeBytes / 2, "the follow-up's frame is a small part of the session")
        // The generators share the model's logits buffer: the original goes on first.
        let savedTokens = g.history.count
        let original = g.generate(maxTokens: 8).ids
        let a = try load(path, like: g.cache), b = try load(whole, like: g.cache)
        XCTAssertFalse(a.interruptedSave)
        XCTAssertEqual(a.history, b.history)
        XCTAssertEqual(a.logits, b.logits)
        XCTAssertEqual(a.header.tokens, savedTokens, "the listing shows the last frame's summary")
        func continuation(_ c: SessionFile.Contents) -> [Int] {
            let resumed = makeGenerator(c.cache)
            resumed.restore(cache: c.cache, history: c.history, logits: c.logits, sampler: c.conversation.restoredSampler)
            return resumed.generate(maxTokens: 8).ids
        }
        XCTAssertEqual(continuation(a), original, "as the conversation itself goes on")
        XCTAssertEqual(continuation(b), original)
    }

    /// An append cut short (the process killed while saving) is a save that did not happen:
    /// the file loads as the save before, and says so; damage inside a whole frame is still
    /// damage. An append that fails (a full disk) leaves the file as it was.
    func testCutOrFailedAppendKeepsTheSaveBefore() throws {
        let g = try primed()
        let path = temporaryPath()
        let first = try SessionFile.save(to: path, generator: g, conversation: conversation(g), modelName: "m")
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let historyBefore = g.history
        g.generate(maxTokens: 20)
        try SessionFile.save(to: path, generator: g, conversation: conversation(g), modelName: "m", after: first)
        let after = try Data(contentsOf: URL(fileURLWithPath: path))
        for cut in [before.count + 3, before.count + 40, (before.count + after.count) / 2, after.count - 1] {
            try after.prefix(cut).write(to: URL(fileURLWithPath: path + ".cut"))
            let c = try load(path + ".cut", like: g.cache)
            XCTAssertTrue(c.interruptedSave, "cut at \(cut)")
            XCTAssertEqual(c.history, historyBefore, "cut at \(cut)")
        }
        var flipped = after
        flipped[(before.count + after.count) / 2 + 20] ^= 0x04
        try flipped.write(to: URL(fileURLWithPath: path + ".flip"))
        XCTAssertThrowsError(try load(path + ".flip", like: g.cache)) { XCTAssertTrue("\($0)".contains("damaged"), "\($0)") }

        try before.write(to: URL(fileURLWithPath: path))
        let restored = try load(path, like: g.cache)
        signal(SIGXFSZ, SIG_IGN)
        var old = rlimit()
        getrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
        var small = old
        small.rlim_cur = rlim_t(before.count + 100)
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &small)
        XCTAssertThrowsError(try SessionFile.save(to: path, generator: g, conversation: conversation(g), modelName: "m", after: restored.checkpoint))
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before, "cut back to the save before")
        let retried = try SessionFile.save(to: path, generator: g, conversation: conversation(g), modelName: "m", after: restored.checkpoint)
        XCTAssertEqual(retried.frames, 2, "the next save appends again")
        XCTAssertEqual(try load(path, like: g.cache).history, g.history)
    }

    /// A thousand randomly damaged files: each loads or throws, never crashes or hangs.
    func testMutatedFilesNeverCrash() throws {
        let g = makeGenerator(makeCache(window: 24))
        try g.feed(tokenizer.encode(String(Self.text.prefix(300))))
        let path = temporaryPath()
        try SessionFile.save(to: path, generator: g, conversation: conversation(g), modelName: "m")
        let good = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var rng = RandomGenerator(seed: 1)
        var failures = 0
        for trial in 0..<1000 {
            var bytes = good
            switch trial % 4 {
            case 0: bytes[Int(rng.next() % UInt64(bytes.count))] ^= UInt8(1 << (rng.next() % 8))
            case 1: bytes = Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count))))
            case 2: for _ in 0..<8 { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(bytes.count)))
            }
            let bad = path + ".m"
            try Data(bytes).write(to: URL(fileURLWithPath: bad))
            do {
                _ = try SessionFile.load(from: bad, model: model, tokenizer: tokenizer, freshCache: makeCache(window: 24))
            } catch {
                failures += 1
            }
        }
        XCTAssertGreaterThan(failures, 900, "nearly every mutation is caught")
    }

    /// A save that cannot be written (read-only folder) throws and leaves the old save as it was.
    func testFailedSaveKeepsThePreviousOne() throws {
        guard getuid() != 0 else {
            // root ignores permissions: use a path under a file instead, which no one can create.
            let g = try primed()
            XCTAssertThrowsError(try SessionFile.save(to: "/dev/null/s", generator: g, conversation: conversation(g), modelName: "m")) {
                XCTAssertTrue("\($0)".contains("cannot save session"), "\($0)")
            }
            return
        }
        let g = try primed()
        let path = temporaryPath()
        try SessionFile.save(to: path, generator: g, conversation: conversation(g), modelName: "m")
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let dir = (path as NSString).deletingLastPathComponent
        chmod(dir, 0o500)
        defer { chmod(dir, 0o700) }
        g.generate(maxTokens: 3)
        XCTAssertThrowsError(try SessionFile.save(to: path, generator: g, conversation: conversation(g), modelName: "m"))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
    }

    /// A full disk mid-save (simulated with a file-size limit, so writes fail with EFBIG as
    /// they would with ENOSPC): an error, the previous save intact, no temporary file left.
    func testFullDiskKeepsThePreviousSave() throws {
        let g = try primed()
        let path = temporaryPath()
        try SessionFile.save(to: path, generator: g, conversation: conversation(g), modelName: "m")
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        g.generate(maxTokens: 3)
        signal(SIGXFSZ, SIG_IGN)
        var old = rlimit()
        getrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
        var small = old
        small.rlim_cur = rlim_t(before.count / 2)
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &small)
        XCTAssertThrowsError(try SessionFile.save(to: path, generator: g, conversation: conversation(g), modelName: "m")) {
            XCTAssertTrue("\($0)".contains("cannot save session"), "\($0)")
        }
        setrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        let dir = (path as NSString).deletingLastPathComponent
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["s"], "no temporary file left")
    }

    /// The session codec (session_codec.c): every value within half a step of the original,
    /// steps never above rms/10 unless an outlier needs the room, constant channels exact,
    /// a partial last group handled, and an outlier channel kept apart from the others.
    func testSessionCodecErrorBound() {
        let rows = 150, d = 64   // two full groups of 64 tokens and a partial one of 22
        var rng = RandomGenerator(seed: 3)
        var x = [Float](repeating: 0, count: rows * d)
        for t in 0..<rows {
            for c in 0..<d {
                let noise = Float(rng.nextUnit() - 0.5)
                x[t * d + c] = c == 5 ? 40 + 8 * noise : c == 9 ? 1.25 : noise * Float(1 + c % 4)
            }
        }
        x[70 * d + 3] = 30   // an outlier within one group of channel 3
        let groups = (rows + 63) / 64
        var codes = [Int8](repeating: 0, count: rows * d), params = [UInt16](repeating: 0, count: groups * d * 2)
        ck_session_encode(x, Int64(rows), Int32(d), 10, &codes, &params)
        var y = [Float](repeating: .nan, count: rows * d)
        ck_session_decode(codes, params, Int64(rows), Int32(d), &y)
        for g in 0..<groups {
            for c in 0..<d {
                let step = ck_fp16_to_fp32(params[(g * d + c) * 2 + 1])
                for t in (g * 64)..<min(rows, g * 64 + 64) {
                    XCTAssertLessThanOrEqual(abs(x[t * d + c] - y[t * d + c]), step / 2 * 1.001 + 1e-6, "group \(g) channel \(c) token \(t)")
                }
                if c == 9 { XCTAssertEqual(step, 0, "a constant channel needs no step") }
            }
        }
        XCTAssertEqual(y[40 * d + 9], 1.25)
        // Channel 5 (mean 40, spread 8) gets its own fine step: far below 40/127.
        XCTAssertLessThan(ck_fp16_to_fp32(params[(0 * d + 5) * 2 + 1]), 0.3)
        // The outlier widens only its own group and channel: there the step must reach it.
        XCTAssertGreaterThanOrEqual(ck_fp16_to_fp32(params[(1 * d + 3) * 2 + 1]) * 127, 29)
        XCTAssertLessThan(ck_fp16_to_fp32(params[(0 * d + 3) * 2 + 1]), 0.15)
    }
}
