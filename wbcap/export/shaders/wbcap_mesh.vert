#version 330 core
// wbcap's vertex stage for pyrender's "mesh" program (wbcap.export.render._use_wbcap_shaders): world
// position and normal for the fragment stage. pyrender binds the attributes and sets the uniforms,
// and replaces the *_LOC names and MAX_* counts with numbers before compiling.

layout(location = 0) in vec3 position;
#ifdef NORMAL_LOC
layout(location = NORMAL_LOC) in vec3 normal;
#endif
#ifdef COLOR_0_LOC
layout(location = COLOR_0_LOC) in vec4 color_0;
#endif
layout(location = INST_M_LOC) in mat4 inst_m;

uniform mat4 M;  // node pose
uniform mat4 V;  // world -> camera
uniform mat4 P;  // camera -> clip

out vec3 frag_position;  // world frame
#ifdef NORMAL_LOC
out vec3 frag_normal;  // world frame, unit length
#endif
#ifdef COLOR_0_LOC
out vec4 vertex_color;
#endif

void main()
{
    mat4 model = M * inst_m;
    vec4 world = model * vec4(position, 1.0);
    gl_Position = P * V * world;
    frag_position = world.xyz;
#ifdef NORMAL_LOC
    // wbcap's nodes have rigid poses (identity, in fact), for which the normal matrix is the model
    // matrix itself; its inverse transpose, needed only for non-uniform scaling, cost ~8 % of a
    // video frame's drawing with llvmpipe (which shades vertices on one thread)
    frag_normal = normalize(mat3(model) * normal);
#endif
#ifdef COLOR_0_LOC
    vertex_color = color_0;
#endif
}
