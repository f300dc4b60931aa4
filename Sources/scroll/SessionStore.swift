import Engine
import Foundation

/// sessions/: named session files (SessionFile). The folder is $SCROLL_SESSIONS, else the
/// `sessions` folder beside the `models` folder the default model was found in (the repo's).
struct SessionStore {
    let directory: String

    static func located() -> SessionStore {
        if let d = ProcessInfo.processInfo.environment["SCROLL_SESSIONS"], !d.isEmpty { return SessionStore(directory: d) }
        return SessionStore(directory: (ModelLocator.installRoot as NSString).appendingPathComponent("sessions"))
    }

    /// A session name is a plain name: letters, digits, '.', '_' and '-', not starting with
    /// '.', at most 64 characters — nothing that could leave the folder.
    static func validate(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard !name.isEmpty, name.count <= 64, !name.hasPrefix("."), name.allSatisfy(allowed.contains) else {
            throw EngineError.invalidArgument("invalid session name '\(name)': use letters, digits, '.', '_' or '-' (not starting with '.', at most 64)")
        }
    }

    func path(_ name: String) throws -> String {
        try Self.validate(name)
        return (directory as NSString).appendingPathComponent(name)
    }

    func exists(_ name: String) -> Bool {
        (try? path(name)).map { FileManager.default.fileExists(atPath: $0) } ?? false
    }

    /// The path to save `name` to, creating the folder if needed.
    func pathForSaving(_ name: String) throws -> String {
        let p = try path(name)
        try createDirectory(for: name)
        removeStaleSaves(of: name)
        return p
    }

    /// The lock file of `name` (SessionLock), creating the folder if needed.
    func lockPath(_ name: String) throws -> String {
        try Self.validate(name)
        try createDirectory(for: name)
        return (directory as NSString).appendingPathComponent(".\(name).lock")
    }

    private func createDirectory(for name: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw EngineError.invalidArgument("cannot save session \(name): cannot create \(directory)")
        }
    }

    /// Temporary files of saves whose process died (kill -9, power loss) before the rename.
    private func removeStaleSaves(of name: String) {
        let prefix = ".\(name).saving-"
        for file in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where file.hasPrefix(prefix) {
            guard let pid = Int32(file.dropFirst(prefix.count)), pid != getpid(), kill(pid, 0) != 0, errno == ESRCH else { continue }
            unlink((directory as NSString).appendingPathComponent(file))
        }
    }

    struct Entry {
        let name: String
        let header: SessionHeader?
        let error: String?
        let bytes: Int
        let modified: Date
    }

    /// Every session, most recently used first; unreadable files are listed with their error.
    func list() -> [Entry] {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory) else { return [] }
        return names.filter { !$0.hasPrefix(".") }.compactMap { name -> Entry? in
            let p = (directory as NSString).appendingPathComponent(name)
            guard let attributes = try? fm.attributesOfItem(atPath: p), attributes[.type] as? FileAttributeType == .typeRegular else { return nil }
            var header: SessionHeader?, problem: String?
            do { header = try SessionFile.header(at: p) } catch { problem = "\(error)" }
            return Entry(name: name, header: header, error: problem, bytes: attributes[.size] as? Int ?? 0,
                         modified: attributes[.modificationDate] as? Date ?? Date(timeIntervalSince1970: 0))
        }.sorted { $0.modified > $1.modified }
    }

    /// One line per session: name, tokens, size, last used, model.
    func table() -> String {
        let entries = list()
        guard !entries.isEmpty else { return "no sessions in \(directory)" }
        let formatter = DateFormatter()
        formatter.dateFormat = "yyyy-MM-dd HH:mm"
        var lines = [pad("NAME", 20) + pad("TOKENS", 10) + pad("SIZE", 10) + pad("LAST USED", 18) + "MODEL"]
        for e in entries {
            let tokens = e.header.map { String($0.tokens) } ?? "?"
            let model = e.header.map { $0.model + ($0.title.isEmpty ? "" : "  \"\($0.title)\"") } ?? "unreadable: \(e.error ?? "")"
            lines.append(pad(e.name, 20) + pad(tokens, 10) + pad(Self.size(e.bytes), 10) + pad(formatter.string(from: e.modified), 18) + Terminal.escaped(model))
        }
        return lines.joined(separator: "\n")
    }

    static func size(_ bytes: Int) -> String {
        let b = Double(bytes)
        if bytes >= 1 << 30 { return String(format: "%.1fG", b / 1_073_741_824) }
        if bytes >= 1 << 20 { return String(format: "%.1fM", b / 1_048_576) }
        if bytes >= 1 << 10 { return String(format: "%.0fK", b / 1024) }
        return "\(bytes)B"
    }

    private func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s + " " : s + String(repeating: " ", count: width - s.count)
    }
}
