import Engine
import Foundation

/// A text edited in the user's editor ($VISUAL, else $EDITOR, else vi), for /edit.
enum Editor {
    /// Writes `text` to a private temporary file, runs the editor on it through the shell (so
    /// "code --wait" works), and returns what the file holds then, without its last newline.
    static func edit(_ text: String) throws -> String {
        let env = ProcessInfo.processInfo.environment
        let editor = [env["VISUAL"], env["EDITOR"]].compactMap { $0 }.first { !$0.isEmpty } ?? "vi"
        let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("scroll-edit-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).txt")
        guard FileManager.default.createFile(atPath: path, contents: Data((text + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw EngineError.invalidArgument("cannot create \(path) for the editor")
        }
        defer { unlink(path) }
        let status = system(editor + " '" + path + "'")
        guard status == 0 else { throw EngineError.invalidArgument("the editor (\(editor)) ended with status \(status >> 8): nothing was sent") }
        guard let data = FileManager.default.contents(atPath: path) else { throw EngineError.invalidArgument("cannot read \(path) back") }
        var edited = String(decoding: data, as: UTF8.self)
        while edited.hasSuffix("\n") { edited.removeLast() }
        return edited.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
