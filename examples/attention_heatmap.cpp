// Draws the attention weights of notebook 003's sentence (003_64c5110f46e13351.txt, "Your
// journey starts with one step", its fixed 3-d embeddings, no scaling) as two heatmaps side by
// side in attention_heatmap.svg, in the current directory: every token attending to every
// token, and causal attention (each token only to itself and the tokens before it). Rows are
// queries, columns keys; each cell shows its weight and is shaded from white (0) to blue (the
// panel's largest weight). Plain SVG text, no dependencies: open it in any browser.
#include <qkv/qkv.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

int main() {
  const std::vector<std::string> tokens = {"Your", "journey", "starts", "with", "one", "step"};
  const qkv::Tensor<float> inputs = {{0.43f, 0.15f, 0.89f}, {0.55f, 0.87f, 0.66f}, {0.57f, 0.85f, 0.64f},
                                     {0.22f, 0.58f, 0.33f}, {0.77f, 0.25f, 0.10f}, {0.05f, 0.80f, 0.55f}};

  // Self-attention of the embeddings with themselves, unscaled as in the notebook.
  qkv::AttentionOptions<float> options;
  options.scale = 1.0;
  auto everything = qkv::scaled_dot_product_attention_with_weights(inputs, inputs, inputs, options);
  options.causal = qkv::Causal::upper_left;
  auto causal = qkv::scaled_dot_product_attention_with_weights(inputs, inputs, inputs, options);
  const qkv::Tensor<float> weights[] = {std::move(everything.weights), std::move(causal.weights)};
  const std::string titles[] = {"every token sees every token", "causal: no token sees ahead"};

  // Layout, in pixels: a title, then two panels of n x n cells with the tokens to their left
  // and above.
  const int n = static_cast<int>(tokens.size()), cell = 64, label = 90, top = 120, gap = 50;
  const int panel = label + n * cell, width = 2 * panel + gap + 20, height = top + n * cell + 50;
  std::ofstream svg("attention_heatmap.svg");
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << ' ' << height << "\" font-family=\"sans-serif\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << width / 2 << "\" y=\"32\" font-size=\"20\" font-weight=\"bold\" text-anchor=\"middle\">"
      << "Attention weights of \u201cYour journey starts with one step\u201d</text>\n"
      << "<text x=\"" << width / 2 << "\" y=\"56\" font-size=\"13\" fill=\"#555\" text-anchor=\"middle\">"
      << "softmax(x x\u1d40) per row: rows are queries, columns keys; each row sums to 1</text>\n";

  for (int p = 0; p < 2; ++p) {
    const qkv::Tensor<float>& w = weights[p];
    const float largest = qkv::max(w);
    const int x0 = 10 + p * (panel + gap) + label;  // the grid's left edge
    char legend[64];
    std::snprintf(legend, sizeof legend, "white = 0, darkest = %.4f", static_cast<double>(largest));
    svg << "<text x=\"" << x0 + n * cell / 2 << "\" y=\"86\" font-size=\"15\" font-weight=\"bold\" "
        << "text-anchor=\"middle\">" << titles[p] << "</text>\n"
        << "<text x=\"" << x0 + n * cell / 2 << "\" y=\"" << top + n * cell + 28 << "\" font-size=\"12\" "
        << "fill=\"#555\" text-anchor=\"middle\">" << legend << "</text>\n";
    for (int i = 0; i < n; ++i) {  // token i labels row i (a query) and column i (a key)
      const int x = x0 + i * cell, y = top + i * cell;
      const std::string& token = tokens[std::size_t(i)];
      svg << "<text x=\"" << x0 - 8 << "\" y=\"" << y + cell / 2 + 5 << "\" font-size=\"14\" "
          << "text-anchor=\"end\">" << token << "</text>\n"
          << "<text x=\"" << x + cell / 2 << "\" y=\"" << top - 8 << "\" font-size=\"14\" "
          << "text-anchor=\"middle\">" << token << "</text>\n";
    }
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        // From white (255, 255, 255) at 0 to blue (8, 69, 148) at the panel's largest weight.
        const float t = w(i, j) / largest;
        const int red = static_cast<int>(255 - t * 247), green = static_cast<int>(255 - t * 186),
                  blue = static_cast<int>(255 - t * 107);
        char value[16];
        std::snprintf(value, sizeof value, "%.2f", static_cast<double>(w(i, j)));
        const int x = x0 + j * cell, y = top + i * cell;
        svg << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << cell << "\" height=\"" << cell
            << "\" fill=\"rgb(" << red << ',' << green << ',' << blue << ")\" stroke=\"#ccc\"/>\n"
            << "<text x=\"" << x + cell / 2 << "\" y=\"" << y + cell / 2 + 5 << "\" font-size=\"13\" "
            << "text-anchor=\"middle\" fill=\"" << (t > 0.55f ? "white" : "black") << "\">" << value << "</text>\n";
      }
  }
  svg << "</svg>\n";
  if (!svg) {
    std::cerr << "could not write attention_heatmap.svg\n";
    return 1;
  }

  std::cout << "Wrote attention_heatmap.svg: the attention weights of \"Your journey starts with one step\","
               " every token and causal, as two 6x6 heatmaps\n";
}
