import Engine
import Foundation

/// Draws a conversation's events on the terminal: the reply on stdout, wrapped at word
/// boundaries; the reading progress and notices on stderr.
final class ConversationView {
    private let progress: ProgressLine?
    private var wrap = WordWrap(width: WordWrap.stdoutWidth)
    private(set) var wroteText = false

    /// `progress`: draw a bar while a long turn is read (not while measuring with --json).
    init(progress: Bool = true) {
        self.progress = progress ? ProgressLine(total: 0, minimum: 512) : nil
    }

    func show(_ event: ConversationEvent) {
        switch event {
        case .reading(let done, let total): progress?.update(done, of: total)
        case .notice(let line): Terminal.note("scroll: " + line)
        case .text(let piece):
            wroteText = true
            Terminal.write(wrap.push(piece))
        }
    }

    /// Ends the reply's last line (when there was one) and clears the bar.
    func finish() {
        progress?.finish()
        if wroteText { Terminal.write(wrap.flush() + "\n") }
        wroteText = false
    }
}

extension Conversation {
    /// Saves with the flags that rebuild this run's cache, so a resume needs none.
    func save(to path: String, encoding: SessionFile.KVEncoding) throws {
        try save(to: path, encoding: encoding, flags: CacheOptions.flags(for: generator.cache, rope: generator.model.rope.scaling))
    }
}
