// Which files hold a checkpoint's weights: the single file or the shards a *.index.json names, checked to stay
// inside the model folder.
#include "transformers/checkpoint_files.h"

#include "transformers/config.h"
#include "transformers/errors.h"

#include <algorithm>
#include <filesystem>
#include <set>

namespace fs = std::filesystem;

namespace transformers {

std::string add_variant(const std::string& name, const std::string& variant) {
  if (variant.empty()) return name;
  auto dot = name.rfind('.');
  return name.substr(0, dot) + "." + variant + name.substr(dot);
}

namespace {

// Reads a *.index.json weight map; the shard files it names, each checked to exist.
WeightFiles sharded_files(const fs::path& base, const std::string& index, const std::string& dir) {
  std::string index_path = (base / index).string();
  json j = read_json_file(index_path, "checkpoint index");
  if (!j.contains("weight_map") || !j["weight_map"].is_object())
    throw CheckpointError(index_path + ": missing 'weight_map' object");
  std::set<std::string> shards;
  for (auto& [key, file] : j["weight_map"].items()) {
    if (!file.is_string()) throw CheckpointError(index_path + ": weight_map entry '" + key + "' is not a file name");
    shards.insert(file.get<std::string>());
  }
  WeightFiles out{{}, index_path};
  std::error_code ec;
  const fs::path real_base = fs::weakly_canonical(base, ec);
  for (const auto& s : shards) {
    // A shard name is a file name inside the model folder: no absolute path, no "..", no link leading outside.
    const fs::path name(s);
    if (s.empty() || name.is_absolute() || name.has_root_name() ||
        std::any_of(name.begin(), name.end(), [](const fs::path& part) { return part == ".."; }))
      throw CheckpointError(index_path + ": shard name '" + s + "' leaves the model folder (only file names inside " +
                            dir + " are allowed)");
    fs::path shard = base / s;
    std::error_code exists_ec;  // e.g. a name too long for the file system: as missing, not a filesystem_error
    if (!fs::exists(shard, exists_ec))
      throw CheckpointError(index_path + ": shard '" + s + "' listed in weight_map does not exist in " + dir +
                            (exists_ec ? " (" + exists_ec.message() + ")" : ""));
    // Links may point inside the folder, or, in a Hugging Face cache snapshot (<repo>/snapshots/<commit>), at the
    // repository's blobs/ folder.
    const fs::path real = fs::weakly_canonical(shard, ec);
    const auto inside = [&](const fs::path& root) {
      const auto rel = real.lexically_relative(root);
      return !rel.empty() && *rel.begin() != "..";
    };
    const bool snapshot = real_base.parent_path().filename() == "snapshots";
    if (ec || !(inside(real_base) || (snapshot && inside(real_base.parent_path().parent_path() / "blobs"))))
      throw CheckpointError(index_path + ": shard '" + s + "' is a link that leaves the model folder " + dir);
    out.files.push_back(shard.string());
  }
  return out;
}

}  // namespace

// transformers' order: model.safetensors, its index, pytorch_model.bin, its index (each with the variant).
WeightFiles find_weight_files(const std::string& dir, const std::string& variant) {
  fs::path base(dir);
  for (const auto& [single, index] : {std::pair<std::string, std::string>{"model.safetensors", "model.safetensors.index.json"},
                                      {"pytorch_model.bin", "pytorch_model.bin.index.json"}}) {
    const std::string file = add_variant(single, variant), index_file = add_variant(index, variant);
    std::error_code ec;  // a variant making the name too long: simply not there
    if (fs::exists(base / file, ec)) return {{(base / file).string()}, (base / file).string()};
    if (fs::exists(base / index_file, ec)) return sharded_files(base, index_file, dir);
  }
  throw CheckpointError("no weights file found in " + dir + ": expected " + add_variant("model.safetensors", variant) +
                        ", " + add_variant("pytorch_model.bin", variant) + " or their sharded index" +
                        (variant.empty() ? "" : " (variant '" + variant + "')"));
}

}  // namespace transformers
