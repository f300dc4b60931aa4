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

    /// The folder holding `models/` (and `prompts/`, `sessions/`): where the default model was found.
    static var installRoot: String {
        let root = ((defaultModelPath() as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
        return root.isEmpty ? "." : root
    }
}
