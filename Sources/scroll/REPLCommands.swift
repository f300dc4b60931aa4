import Engine
import Foundation

/// The REPL's slash commands: one table drives dispatch, /help and tab completion.
extension REPL {
    /// What a command's argument is, for completion.
    enum Argument { case none, session, file, setting, prompt, text }

    struct Command {
        let name: String
        var aliases: [String] = []
        let usage: String
        let help: String
        let argument: Argument
        let run: (REPL, String) throws -> Void
    }

    static func command(named name: String) -> Command? {
        commands.first { $0.name == name || $0.aliases.contains(name) }
    }

    static let commands: [Command] = [
        Command(name: "help", usage: "", help: "list the commands", argument: .none) { _, _ in
            // Wrapped at the terminal's width, under the help column ("max-toke" / "ns" at 120).
            var size = winsize()
            let width = ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 40 ? Int(size.ws_col) : 0
            for c in commands {
                let help = c.help + (c.aliases.isEmpty ? "" : " (also " + c.aliases.map { "/" + $0 }.joined(separator: ", ") + ")")
                var wrap = WordWrap(width: max(0, width - 23))
                let text = (wrap.push(help) + wrap.flush()).replacingOccurrences(of: "\n", with: "\n" + String(repeating: " ", count: 22))
                Terminal.note(("/" + c.name + (c.usage.isEmpty ? "" : " " + c.usage)).padding(toLength: 22, withPad: " ", startingAt: 0) + text)
            }
            Terminal.note("A line ending in \\ continues on the next; \"\"\" opens and closes a block of lines. Ctrl-C stops a reply; Ctrl-D leaves.")
        },
        Command(name: "save", usage: "[NAME]", help: "save the conversation (as NAME, which it is then attached to)", argument: .session) { repl, arg in
            guard let name = arg.isEmpty ? repl.sessionName : arg else { throw EngineError.invalidArgument("usage: /save NAME (no session is attached yet)") }
            // Another name: locked first, and never written over a conversation it does not hold.
            let lock = try repl.lock(name)
            if name != repl.sessionName, repl.store.exists(name) {
                throw EngineError.invalidArgument("session \(name) holds another conversation: choose a new name (or /load \(name))")
            }
            let path = try repl.store.pathForSaving(name)
            try repl.conversation.save(to: path, encoding: repl.encoding)
            repl.attached = lock
            let bytes = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
            Terminal.note("saved session \(name): \(repl.conversation.generator.cache.tokensSeen) tokens, \(SessionStore.size(bytes))")
        },
        Command(name: "load", usage: "NAME", help: "resume a saved session and attach to it (the current one is kept if it cannot be read)", argument: .session) { repl, arg in
            guard !arg.isEmpty else { throw EngineError.invalidArgument("usage: /load NAME (/sessions lists them)") }
            let lock = try repl.lock(arg)
            let path = try repl.store.path(arg)
            guard repl.store.exists(arg) else { throw EngineError.invalidArgument("no session \(arg) (/sessions lists them)") }
            // This process's cache is built; a session with other settings resumes in its own run.
            let g = repl.conversation.generator
            if let saved = try SessionFile.header(at: path).flags, saved != CacheOptions.flags(for: g.cache, rope: g.model.rope.scaling) {
                throw EngineError.invalidArgument("session \(arg) was saved with other cache settings: resume it with scroll --session \(arg)")
            }
            repl.autosave()
            let header = try repl.conversation.load(from: path, events: ConversationView().show)
            repl.attached = lock
            Terminal.note("loaded session \(arg): \(header.tokens) tokens, \(header.messages) messages")
        },
        Command(name: "sessions", usage: "", help: "list saved sessions: name, tokens, size, last used, model", argument: .none) { repl, _ in
            Terminal.note(repl.store.table())
        },
        Command(name: "reset", usage: "", help: "clear the conversation and the cache", argument: .none) { repl, _ in
            let left = repl.detach()
            repl.conversation.reset()
            Terminal.note("conversation cleared" + left)
        },
        Command(name: "system", usage: "[TEXT|@NAME]", help: "show the system prompt, or set it (@NAME: a saved prompt, Tab lists them) and start over", argument: .prompt) { repl, arg in
            guard !arg.isEmpty else {
                Terminal.note(repl.conversation.systemPrompt.map { "system prompt: \($0)" } ?? "system prompt: the model's default")
                return
            }
            let prompt = arg.hasPrefix("@") ? try PromptLibrary.load(String(arg.dropFirst())) : arg
            let left = repl.detach()
            repl.conversation.setSystemPrompt(prompt)
            Terminal.note("system prompt set; conversation cleared" + left)
        },
        Command(name: "set", usage: "[NAME VALUE]", help: "show or change a setting: " + settings.map(\.name).joined(separator: ", "), argument: .setting) { repl, arg in
            let words = arg.split(separator: " ").map(String.init)
            guard words.count == 2, let setting = settings.first(where: { $0.name == words[0] }) else {
                if !words.isEmpty { throw EngineError.invalidArgument("usage: /set NAME VALUE, NAME one of " + settings.map(\.name).joined(separator: ", ")) }
                for s in settings { Terminal.note(s.name.padding(toLength: 16, withPad: " ", startingAt: 0) + s.show(repl)) }
                return
            }
            try setting.set(repl, words[1])
            Terminal.note("\(setting.name) = \(setting.show(repl))")
        },
        Command(name: "undo", usage: "", help: "drop the last exchange: the conversation and its cache as they were before it", argument: .none) { repl, _ in
            guard let sent = repl.conversation.undo() else { throw EngineError.invalidArgument("nothing to undo") }
            let left = repl.conversation.undoableExchanges
            let what: String
            switch sent {
            case .reply(let text, _): what = "\"" + Terminal.escaped(REPL.shortened(text)) + "\" and its reply"
            case .document(let name): what = "reading " + Terminal.escaped(name)
            }
            Terminal.note("undid " + what + (left > 0 ? " (\(left) more can be undone)" : ""))
            repl.autosave()
        },
        Command(name: "retry", usage: "", help: "a new reply to the last message (the last reply is dropped)", argument: .none) { repl, _ in
            guard repl.conversation.undoableExchanges > 0 else { throw EngineError.invalidArgument("nothing to retry") }
            var refused = false
            repl.answer { stop, events in
                let stats = try repl.conversation.retry(maxTokens: repl.maxTokens, shouldStop: stop, events: events)
                refused = stats == nil
                return stats
            }
            if refused { throw EngineError.invalidArgument("the last exchange read a document: there is no reply to retry (/undo drops it)") }
        },
        Command(name: "edit", usage: "", help: "edit the last message in $VISUAL or $EDITOR, then send it in place of the last exchange", argument: .none) { repl, _ in
            guard case .reply(let text, nil)? = repl.conversation.lastSent else { throw EngineError.invalidArgument("no message to edit") }
            let edited = try Editor.edit(text)
            guard !edited.isEmpty else { throw EngineError.invalidArgument("the edited message is empty: nothing was sent") }
            repl.conversation.undo()
            repl.send(edited)
        },
        Command(name: "show", usage: "", help: "the model, the settings, the system prompt and the attached session", argument: .none) { repl, _ in
            repl.show()
        },
        Command(name: "stats", usage: "", help: "tokens, cache, memory and speed", argument: .none) { repl, _ in
            repl.showStats()
        },
        Command(name: "recall", usage: "", help: "the earlier passages the last answer used: read again, and recalled by attention", argument: .none) { repl, _ in
            repl.showRecall()
        },
        Command(name: "file", usage: "PATH", help: "read a document into the conversation", argument: .file) { repl, arg in
            guard !arg.isEmpty else { throw EngineError.invalidArgument("usage: /file PATH") }
            let path = (arg as NSString).expandingTildeInPath
            guard let data = FileManager.default.contents(atPath: path) else {
                throw EngineError.invalidArgument("cannot read \(path)")
            }
            let view = ConversationView()
            let start = Date()
            repl.interrupt.clear()
            let (read, total) = try repl.conversation.addDocument(String(decoding: data, as: UTF8.self), name: (path as NSString).lastPathComponent,
                                                                  shouldStop: { repl.interrupt.isRaised }, events: view.show)
            view.finish()
            if read < total {
                Terminal.note(String(format: "stopped reading %@: the first %d of %d tokens are in the conversation", path, read, total))
            } else {
                Terminal.note(String(format: "read %@: %d tokens in %.1f s", path, total, Date().timeIntervalSince(start)))
            }
            repl.autosave()
        },
        Command(name: "quit", aliases: ["exit", "bye"], usage: "", help: "leave (a named session is saved first; Ctrl-D does the same)", argument: .none) { repl, _ in
            repl.done = true
        },
    ]

    /// `text` on one line, at most 60 characters.
    static func shortened(_ text: String) -> String {
        let line = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return line.count > 60 ? String(line.prefix(59)) + "…" : line
    }

    /// A /set setting: its name, how it shows, how it parses.
    struct Setting {
        let name: String
        let show: (REPL) -> String
        let set: (REPL, String) throws -> Void
    }

    static let settings: [Setting] = [
        sampler("temp", \.temperature),
        sampler("top-p", \.topP),
        sampler("top-k", \.topK),
        sampler("min-p", \.minP),
        sampler("repeat-penalty", \.repeatPenalty),
        sampler("repeat-last-n", \.repeatLastN),
        Setting(name: "seed", show: { "\($0.conversation.generator.sampler.settings.seed)" }) { repl, text in
            guard let seed = UInt64(text) else { throw EngineError.invalidArgument("seed takes a whole number") }
            repl.conversation.generator.sampler.settings.seed = seed
            repl.conversation.generator.sampler.rng = RandomGenerator(seed: seed)
        },
        Setting(name: "max-tokens", show: { "\($0.maxTokens)" }) { repl, text in
            guard let n = Int(text), n >= 0 else { throw EngineError.invalidArgument("max-tokens takes a whole number ≥ 0") }
            repl.maxTokens = n
        },
    ]

    private static func sampler<T: LosslessStringConvertible>(_ name: String, _ key: WritableKeyPath<SamplerSettings, T>) -> Setting {
        Setting(name: name, show: { "\($0.conversation.generator.sampler.settings[keyPath: key])" }) { repl, text in
            var settings = repl.conversation.generator.sampler.settings
            guard let v = T(text) else { throw EngineError.invalidArgument("invalid value for \(name): \(text)") }
            settings[keyPath: key] = v
            if let problem = settings.problem { throw EngineError.invalidArgument("invalid value for \(name): \(problem)") }
            repl.conversation.generator.sampler.settings = settings
        }
    }

    /// The model (architecture, size, weight types, trained context, chat template), the
    /// settings, the system prompt's text and the attached session.
    func show() {
        let g = conversation.generator, c = g.model.config, gguf = g.model.gguf
        let weights = ModelLocator.WeightSummary(gguf)
        Terminal.note("model: \(Terminal.escaped((gguf.path as NSString).lastPathComponent)) — \(Terminal.escaped(c.architecture)), "
                      + String(format: "%.0fM parameters", Double(weights.parameters) / 1e6) + " (\(weights.mix))")
        Terminal.note("       \(c.layerCount) layers, trained context \(c.contextLength), chat template: "
                      + (conversation.raw ? "none (--raw)" : conversation.template == nil ? "none" : "ChatML"))
        Terminal.note("cache: " + CacheOptions.describe(g.cache) + ", RoPE " + g.model.rope.scaling.kind.rawValue
                      + (g.model.rope.scaling.kind == .none ? "" : String(format: " ×%.3g", g.model.rope.scaling.factor)))
        let s = g.sampler.settings
        Terminal.note("sampling: temp \(s.temperature), top-k \(s.topK), top-p \(s.topP), min-p \(s.minP), repeat-penalty \(s.repeatPenalty) over \(s.repeatLastN), seed \(s.seed), max-tokens \(maxTokens)")
        Terminal.note("system prompt: " + (conversation.systemPrompt.map { Terminal.escaped($0, lines: true) } ?? "the model's default"))
        Terminal.note("session: " + (sessionName.map { "\($0) (attached: saved after each reply)" } ?? "none (/save NAME keeps this conversation)"))
    }

    func showStats() {
        let g = conversation.generator, cache = g.cache
        Terminal.note("tokens seen: \(cache.tokensSeen); messages: \(conversation.messages.count)")
        Terminal.note(String(format: "cache: %d of %d slots (%@), KV %@, %.0f MiB", cache.count, cache.capacity,
                             cache.policy.window.map { "sinks \(cache.policy.sinks) + window \($0)" } ?? "dense",
                             cache.precision.rawValue, Double(cache.bytes) / 1_048_576))
        if let m = cache.memory {
            Terminal.note(String(format: "memory: %d tokens in %d blocks, %.0f MiB in RAM, %.0f MiB in its file%@", m.tokens, m.blocks,
                                 Double(m.ramBytes) / 1_048_576, Double(m.fileBytes) / 1_048_576, m.failure.map { " (\($0))" } ?? ""))
        } else {
            Terminal.note("memory: off")
        }
        if let r = lastReply {
            Terminal.note(String(format: "last reply: %d tokens at %.1f t/s after reading %d at %.0f t/s", r.tokens,
                                 r.seconds > 0 ? Double(r.tokens) / r.seconds : 0, r.promptTokens,
                                 r.promptSeconds > 0 ? Double(r.promptTokens) / r.promptSeconds : 0))
        }
        Terminal.note(String(format: "resident memory: %.0f MiB", Bench.residentMiB()))
        if let name = sessionName { Terminal.note("session: \(name)") }
    }

    /// What the last answer used of earlier text: the passages read again before the question
    /// (why each was chosen), then the blocks the attention ranking recalled, most picked first.
    func showRecall() {
        let g = conversation.generator
        guard let memory = g.cache.memory else { Terminal.note("block memory is off (--no-memory)"); return }
        func snippet(_ range: Range<Int>) -> String {
            let text = g.tokenizer.decode(Array(g.history[range.clamped(to: 0..<g.history.count)])).replacingOccurrences(of: "\n", with: " ⏎ ")
            return Terminal.dim("  " + (text.count > 240 ? String(text.prefix(240)) + "…" : text))
        }
        if !conversation.lastPassages.isEmpty {
            Terminal.note("read again before the question (best last):")
            for read in conversation.lastPassages {
                let p = read.passage, range = read.source
                Terminal.note(String(format: "tokens %d–%d  words %@  score %.2f, %.0f%% of the question's weight", range.lowerBound,
                                     range.upperBound, p.match.words.joined(separator: " "), p.match.score, 100 * p.match.coverage))
                Terminal.note(snippet(range))
            }
        } else if conversation.passages != nil {
            Terminal.note("nothing read again before the last question (no earlier passage shares its words)")
        }
        let recalls = memory.lastRecall()
        guard !recalls.isEmpty else { Terminal.note("nothing recalled yet: the conversation still fits in the window"); return }
        Terminal.note("recalled by attention:")
        let pairs = g.model.config.layerCount * g.model.config.kvHeadCount
        for r in recalls.prefix(8) {
            var scores: [Float] = []
            for layer in memory.recalled { for head in layer { for x in head where x.block == r.block { scores.append(x.score) } } }
            let mean = scores.isEmpty ? 0 : scores.reduce(0, +) / Float(scores.count)
            Terminal.note(String(format: "tokens %d–%d  picked by %d of %d layer-heads  mean score %.2f", r.start, r.start + r.tokens,
                                 r.picks, pairs, mean))
            Terminal.note(snippet(r.start ..< r.start + r.tokens))
        }
        if recalls.count > 8 { Terminal.note("… and \(recalls.count - 8) more blocks") }
    }
}
