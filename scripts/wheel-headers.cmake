# Where NVIDIA's Python wheels put their headers: <site-packages>/nvidia/<wheel>/include (cusparseLt.h in
# nvidia/cusparselt, cublasLt.h and cusparse.h in nvidia/cu13 or nvidia/cublas, nvidia/cusparse). Sets
# NMS_WHEEL_INCLUDE_DIRS to the existing ones, in the order native/cuda/dynlib.h searches for the libraries:
# $VIRTUAL_ENV, $CONDA_PREFIX, /opt/*/.venv, /opt/*/venv, the prefix of the python3 on PATH.
# CMakeLists.txt includes it; `cmake -P scripts/wheel-headers.cmake` prints the list (one per line, for the tests).
set(NMS_WHEEL_INCLUDE_DIRS)
set(_nms_prefixes)
foreach(_nms_var VIRTUAL_ENV CONDA_PREFIX)
  if(DEFINED ENV{${_nms_var}} AND NOT "$ENV{${_nms_var}}" STREQUAL "")
    list(APPEND _nms_prefixes "$ENV{${_nms_var}}")
  endif()
endforeach()
foreach(_nms_glob "/opt/*/.venv" "/opt/*/venv")
  file(GLOB _nms_found LIST_DIRECTORIES true "${_nms_glob}")
  list(SORT _nms_found)
  list(APPEND _nms_prefixes ${_nms_found})
endforeach()
# The python3 on PATH without following links (a venv's python3 links to the system one): <prefix>/bin/python3.
find_program(NMS_PYTHON3 python3)
if(NMS_PYTHON3)
  get_filename_component(_nms_bin "${NMS_PYTHON3}" DIRECTORY)
  get_filename_component(_nms_prefix "${_nms_bin}" DIRECTORY)
  list(APPEND _nms_prefixes "${_nms_prefix}")
endif()
foreach(_nms_p IN LISTS _nms_prefixes)
  file(GLOB _nms_inc LIST_DIRECTORIES true "${_nms_p}/lib/python3*/site-packages/nvidia/*/include")
  list(SORT _nms_inc ORDER DESCENDING)  # newest Python first, as the loader does
  list(APPEND NMS_WHEEL_INCLUDE_DIRS ${_nms_inc})
endforeach()
list(REMOVE_DUPLICATES NMS_WHEEL_INCLUDE_DIRS)
if(CMAKE_SCRIPT_MODE_FILE)
  foreach(_nms_d IN LISTS NMS_WHEEL_INCLUDE_DIRS)
    message("${_nms_d}")
  endforeach()
endif()
