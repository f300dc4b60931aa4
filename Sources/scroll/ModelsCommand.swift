import ArgumentParser
import Engine
import Foundation

/// `scroll models`: the GGUF files Scroll finds by name (`-m NAME`), with what each holds.
struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models", abstract: "List the GGUF models in models/ (and $SCROLL_MODELS), which -m NAME takes.")

    func run() throws {
        let found = ModelLocator.folders.flatMap { folder in ModelLocator.models(in: folder).map { (folder, $0) } }
        guard !found.isEmpty else {
            print("no GGUF models in " + ModelLocator.folders.joined(separator: " or ") + " (scripts/setup.sh installs the default one)")
            return
        }
        print("NAME".padding(toLength: 36, withPad: " ", startingAt: 0) + "ARCHITECTURE  PARAMETERS  CONTEXT  SIZE     WEIGHTS")
        for (folder, file) in found {
            let path = (folder as NSString).appendingPathComponent(file)
            let name = Terminal.escaped(String(file.dropLast(5))).padding(toLength: 35, withPad: " ", startingAt: 0)
            let size = SessionStore.size(((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0)
            guard let gguf = try? GGUFFile(path: path), let config = try? ModelConfig(gguf: gguf) else {
                print(name + " (not a model Scroll can read)")
                continue
            }
            let summary = ModelLocator.WeightSummary(gguf)
            let architecture = Terminal.escaped(config.architecture).padding(toLength: 13, withPad: " ", startingAt: 0)
            let numbers = String(format: " %9.0fM  %7d  ", Double(summary.parameters) / 1e6, config.contextLength)
            print(name + " " + architecture + numbers + size.padding(toLength: 8, withPad: " ", startingAt: 0) + " " + summary.mix)
        }
    }
}
