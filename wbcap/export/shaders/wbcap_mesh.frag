#version 330 core
// wbcap's fragment stage for pyrender's "mesh" program (wbcap.export.render._use_wbcap_shaders).
//
// The shading model is pyrender's for an untextured metallic-roughness material lit by directional
// lights, so pictures look as they did: the glTF 2.0 reference BRDF (glTF 2.0 specification,
// Appendix B) with Schlick's Fresnel term, the GGX distribution with alpha = roughness^2, and the
// Schlick-GGX visibility term with k = (roughness + 1)^2 / 8 (Karis, "Real Shading in Unreal
// Engine 4", SIGGRAPH 2013), plus ambient light and a 1/2.2 gamma. What differs is the cost: the
// light loop has a compile-time bound and there are no point, spot, shadow or texture paths. With
// Mesa's llvmpipe, pyrender's shader (its light loops bounded by a uniform) made the fragment stage
// ~3x slower than the rest of a video frame's drawing.
//
// pyrender sets the uniforms below by name (others it sets are ignored) and replaces
// MAX_DIRECTIONAL_LIGHTS and the *_LOC names with numbers before compiling.

struct DirectionalLight {
    vec3 color;
    float intensity;
    vec3 direction;  // world frame, the way the light travels
};

struct Material {
    vec4 base_color_factor;  // linear RGB, alpha
    float metallic_factor;
    float roughness_factor;  // perceptual roughness
};

uniform Material material;
uniform DirectionalLight directional_lights[MAX_DIRECTIONAL_LIGHTS];
uniform int n_directional_lights;
uniform vec3 cam_pos;  // world frame
uniform vec3 ambient_light;

in vec3 frag_position;
#ifdef NORMAL_LOC
in vec3 frag_normal;
#endif
#ifdef COLOR_0_LOC
in vec4 vertex_color;
#endif

out vec4 frag_color;

const float PI = 3.141592653589793;
const float DIELECTRIC_F0 = 0.04;  // reflectance at normal incidence of non-metals; also the lowest roughness

void main()
{
    vec4 base = material.base_color_factor;
#ifdef COLOR_0_LOC
    base *= vertex_color;
#endif
    float metallic = clamp(material.metallic_factor, 0.0, 1.0);
    float roughness = clamp(material.roughness_factor, DIELECTRIC_F0, 1.0);
    vec3 c_diff = base.rgb * (1.0 - DIELECTRIC_F0) * (1.0 - metallic);
    vec3 f0 = mix(vec3(DIELECTRIC_F0), base.rgb, metallic);
    float a2 = roughness * roughness * roughness * roughness;  // GGX alpha^2, alpha = roughness^2
    float k = (roughness + 1.0) * (roughness + 1.0) / 8.0;

#ifdef NORMAL_LOC
    vec3 n = normalize(frag_normal);
#else
    vec3 n = normalize(cam_pos - frag_position);  // no normals: lit as if facing the camera
#endif
    vec3 v = normalize(cam_pos - frag_position);
    float nv = clamp(abs(dot(n, v)), 0.001, 1.0);
    float g_v = nv / (nv * (1.0 - k) + k);

    vec3 color = base.rgb * ambient_light;
    for (int i = 0; i < MAX_DIRECTIONAL_LIGHTS; i++) {
        if (i < n_directional_lights) {
            vec3 l = normalize(-directional_lights[i].direction);
            vec3 h = normalize(l + v);
            float nl = clamp(dot(n, l), 0.001, 1.0);
            float nh = clamp(dot(n, h), 0.0, 1.0);
            float s = 1.0 - clamp(dot(v, h), 0.0, 1.0);
            vec3 fresnel = f0 + (1.0 - f0) * (s * s * s * s * s);
            float g = g_v * nl / (nl * (1.0 - k) + k);
            float d = nh * nh * (a2 - 1.0) + 1.0;
            float distribution = a2 / (PI * d * d);
            vec3 brdf = (1.0 - fresnel) * c_diff / PI + fresnel * (g * distribution / (4.0 * nl * nv + 0.001));
            color += nl * directional_lights[i].intensity * directional_lights[i].color * brdf;
        }
    }
    frag_color = clamp(vec4(pow(color, vec3(1.0 / 2.2)), base.a), 0.0, 1.0);
}
