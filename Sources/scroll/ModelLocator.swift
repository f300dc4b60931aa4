import Engine
import Foundation

/// Finds the default model: $SCROLL_MODEL, else models/<default> in the working directory or
/// any folder above it or above the executable (so `swift run` and an installed binary in
/// .build/ both find the repo's models/ folder that scripts/setup.sh fills).
enum ModelLocator {
    static let defaultFileName = "SmolLM2-135M-Instruct.Q4_1.gguf"

    static func defaultModelPath() -> String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["SCROLL_MODEL"], !p.isEmpty { return p }
        let fm = FileManager.default
        var starts = [URL(fileURLWithPath: fm.currentDirectoryPath)]
        starts.append(URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent())
        for start in starts {
            var dir = start.standardizedFileURL
            while true {
                let candidate = dir.appendingPathComponent("models").appendingPathComponent(defaultFileName).path
                if fm.fileExists(atPath: candidate) { return candidate }
                let parent = dir.deletingLastPathComponent()
                if parent.path == dir.path { break }
                dir = parent
            }
        }
        return "models/" + defaultFileName
    }

    /// Where `-m NAME` and `scroll models` look: $SCROLL_MODELS, then the installed models/.
    static var folders: [String] {
        let own = (installRoot as NSString).appendingPathComponent("models")
        let env = ProcessInfo.processInfo.environment["SCROLL_MODELS"].flatMap { $0.isEmpty ? nil : $0 }
        return (env.map { [$0] } ?? []) + [own]
    }

    /// The .gguf files of a folder, by name.
    static func models(in folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".gguf") }.sorted()
    }

    /// `-m`'s value as a path: a file that exists as given (or any path with a slash, whose
    /// load then says what is wrong with it), else a name, with or without .gguf, in one of
    /// `folders`.
    static func resolve(_ model: String) throws -> String {
        if FileManager.default.fileExists(atPath: model) || model.contains("/") { return model }
        for folder in folders {
            for name in [model, model + ".gguf"] {
                let path = (folder as NSString).appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: path) { return path }
            }
        }
        throw EngineError.invalidArgument("no model \(model): not a file, nor a name in \(folders.joined(separator: " or ")) (scroll models lists them)")
    }

    /// A model's parameter count and its weight types by share ("Q4_1 74%, Q8_0 26%").
    struct WeightSummary {
        let parameters: Int
        let mix: String

        init(_ gguf: GGUFFile) {
            parameters = gguf.tensors.values.reduce(0) { $0 + $1.elementCount }
            var types: [String: Int] = [:]
            for t in gguf.tensors.values { types[GGMLType.name(of: t.type), default: 0] += t.elementCount }
            let total = max(1, parameters)
            mix = types.sorted { $0.value > $1.value }.map { type, count in
                let share = 100 * Double(count) / Double(total)
                return share < 0.5 ? "\(type) <1%" : String(format: "%@ %.0f%%", type, share)
            }.joined(separator: ", ")
        }
    }

    /// The folder holding `models/` (and `prompts/`, `sessions/`): where the default model was found.
    static var installRoot: String {
        let root = ((defaultModelPath() as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        return root.isEmpty ? "." : root
    }
}
