import CReadline
import Foundation

/// The one file that calls libreadline: line editing and in-memory history.
enum LineEditor {
    /// Reads a line with the prompt; nil at end of input (Ctrl-D).
    static func readLine(prompt: String) -> String? {
        guard let cLine = readline(prompt) else { return nil }
        defer { free(cLine) }
        let line = String(cString: cLine)
        if !line.trimmingCharacters(in: .whitespaces).isEmpty { add_history(cLine) }
        return line
    }
}
