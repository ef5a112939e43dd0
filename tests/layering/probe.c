/* layering probe: compiled with the include directories of one floor and
 * one header named by XF_PROBE_HEADER. CMake builds it twice per floor: with
 * a header of the floor itself (must compile: the control) and with a
 * header of the floor above (must NOT compile: the arrow would point up).
 * See the layering_* tests in CMakeLists.txt. */
#include XF_PROBE_HEADER

int xf_layering_probe(void);
int xf_layering_probe(void) { return 0; }
