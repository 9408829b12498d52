# lema_library(NAME DIR [EXCLUDE file...]) builds a static library from every
# .cpp in DIR (not recursive). New files need no CMake edit.
function(lema_library name dir)
  cmake_parse_arguments(ARG "" "" "EXCLUDE" ${ARGN})
  file(GLOB srcs CONFIGURE_DEPENDS ${dir}/*.cpp)
  foreach(ex ${ARG_EXCLUDE})
    list(REMOVE_ITEM srcs ${dir}/${ex})
  endforeach()
  add_library(${name} STATIC ${srcs})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/generated)
endfunction()

# lema_add_test(SRC LINK libs... [LABELS labels...] [TIMEOUT s])
# One executable per *_test.cpp, named after the file, run by ctest.
function(lema_add_test src)
  cmake_parse_arguments(ARG "" "TIMEOUT" "LINK;LABELS" ${ARGN})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE ${ARG_LINK} GTest::gtest GTest::gtest_main Threads::Threads)
  target_compile_definitions(${name} PRIVATE
    LEMA_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    LEMA_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data")
  if(TARGET lema)
    target_compile_definitions(${name} PRIVATE LEMA_BINARY="$<TARGET_FILE:lema>")
    add_dependencies(${name} lema)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT})
endfunction()

# Every *_test.cpp in DIR, linked against LIBS, labelled LABELS.
function(lema_add_tests_in dir)
  cmake_parse_arguments(ARG "" "" "LINK;LABELS" ${ARGN})
  file(GLOB tests CONFIGURE_DEPENDS ${dir}/*_test.cpp)
  foreach(t ${tests})
    lema_add_test(${t} LINK ${ARG_LINK} LABELS ${ARG_LABELS})
  endforeach()
endfunction()
