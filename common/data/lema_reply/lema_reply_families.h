// Internal to the lema-reply builder: the template families (fact tables x
// question templates, and computed questions). Not a public API.
#pragma once

#include <string>
#include <vector>

#include "common/text/chat_format.h"

namespace lema {

struct FamilyItem {
  std::string question;
  std::string answer;
  std::string explanation;
  Confidence confidence = Confidence::kHigh;
};

struct Family {
  std::string name;
  std::string category;
  // Computed families have large grids; their weight sets their share of
  // what the fact families leave. Fact families weigh their item count, so
  // at the default size every fact question is used.
  bool computed = false;
  double weight = 0;
  std::vector<FamilyItem> items;  // distinct questions, fixed order
};

// Every family, in a fixed order (the builder's output depends on it).
std::vector<Family> lema_reply_families();

}  // namespace lema
