// Each native/napi/<family>.cc registers its functions with NMS_NAPI_FAMILY; addon.cc installs them all on the
// exports object. Adding an op family is adding a file, with no central list to edit.
#pragma once
#include <napi.h>

namespace nms::napi {

using RegisterFn = void (*)(Napi::Env, Napi::Object);
struct Family {
  Family(const char* name, RegisterFn fn);
};

}  // namespace nms::napi

#define NMS_NAPI_FAMILY(name, fn) static ::nms::napi::Family nms_family_##name(#name, fn)
